"""Re-deriving one assessment as the risk projection made it, and comparing it with the record."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

from pydantic import ValidationError

from analyzers import (
    ANALYZER_VERSION,
    EVIDENCE_RECORDED_V2,
    REDERIVABLE_VERSIONS,
    AnalyzerConfig,
    AnalyzerError,
    EnrichmentSignal,
    Evidence,
    EvidenceDataV2,
    ReviewSignal,
    applied_modifier,
    assess,
    conservative_assessment,
)
from eventstore import CloudEvent, RecordedEvent, encode_event
from eventstore.errors import DecodeError
from projections.audit._diff import FieldDifference, first_difference
from projections.errors import UnexpectedEventTypeError
from projections.learning import ConfigBook, load_promoted
from projections.risk import (
    EvidenceRef,
    RiskAssessedData,
    assessment_event,
    evidence_event,
    evidence_ref,
    latest_evidence,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from analyzers import Assessment, EntityRiskState
    from eventstore import EventSchemas, EventStore, RawMessage
    from projections.audit._records import StoredAssessment

__all__ = [
    "UNASSESSABLE",
    "ByteVerifier",
    "LiveScoring",
    "Scorings",
    "compare",
    "derive",
    "evidence_of",
]

UNASSESSABLE = (DecodeError, AnalyzerError, UnexpectedEventTypeError, ValueError)
"""What stored evidence that the projection would have dead-lettered raises here."""


def evidence_of(schemas: EventSchemas, rec: RecordedEvent) -> tuple[Evidence, EvidenceRef]:
    """The evidence as the projection scored it, and the reference its assessment holds.

    Evidence of any version is read as the latest, as the projection reads it.

    Raises:
        DecodeError: the stored message is not a valid event.
        UnexpectedEventTypeError: it is not evidence.
        InvalidEvidenceError: the analyzer refuses it.
    """
    event = evidence_event(rec)
    data = latest_evidence(schemas, event)[1]
    return _scored(event, data, rec.stream, rec.sequence, rec.headers)


def _decoded_evidence(
    store: EventStore, raw: RawMessage
) -> tuple[CloudEvent, Evidence, EvidenceRef]:
    """:func:`evidence_of` a stored message, validated once, as the projection decodes it.

    Also returns the evidence event, read as the latest version of evidence.

    Raises:
        DecodeError: the stored message is not a valid event.
        UnexpectedEventTypeError: it is not evidence.
        InvalidEvidenceError: the analyzer refuses it.
    """
    event, data = store.decoded(raw)  # upcast: every version of evidence reads as the latest
    if event.type != EVIDENCE_RECORDED_V2:
        raise UnexpectedEventTypeError(event.type, EVIDENCE_RECORDED_V2)
    return (event, *_scored(event, data, raw.stream, raw.seq, raw.headers))


def _scored(
    event: CloudEvent, data: BaseModel, stream: str, sequence: int, headers: Mapping[str, str]
) -> tuple[Evidence, EvidenceRef]:
    """The evidence of evidence ``event`` with its typed ``data``, stored at ``sequence``."""
    assert isinstance(data, EvidenceDataV2)  # noqa: S101 - the registry maps the type to it
    evidence = Evidence.from_data(
        data, event_id=event.id, source=event.source, sequence=sequence, event_time=event.time
    )
    return evidence, evidence_ref(event, stream, sequence, headers)


class Scoring(Protocol):
    """How the projection scored a recorded assessment: what re-deriving it needs of it."""

    @property
    def degraded(self) -> bool:
        """Scored conservatively, while enrichment was down."""

    @property
    def enrichment(self) -> EnrichmentSignal | None:
        """The enrichment signal it used."""

    @property
    def review(self) -> ReviewSignal | None:
        """The decisions about the entity it applied."""


class _Scored(NamedTuple):
    degraded: bool
    enrichment: EnrichmentSignal | None
    review: ReviewSignal | None


@dataclass(frozen=True, slots=True)
class LiveScoring:
    """A promoted config version, live from ``effective_from`` on (until the next promotion)."""

    effective_from: int
    version: str
    fingerprint: str
    config: AnalyzerConfig | None
    """``None``: this build cannot re-derive with it (``problem`` says why)."""
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Scorings:
    """The scorings a replay re-derives with: the config live at each evidence position.

    Before any promotion that is the replay's own config (``current``), as
    each known analyzer version used it; from a promotion's ``effective_from``
    on, the promoted version's config as the log recorded it (``promoted``).
    An assessment is re-derived only with the version and config that made
    it, so these are looked up by the evidence position and the recorded
    version and fingerprint. The config live at a position (before any
    promotion, the replay's own) bounds what an assessment may claim an
    enricher answered.
    """

    current: AnalyzerConfig
    by_version: Mapping[str, AnalyzerConfig]
    promoted: tuple[LiveScoring, ...] = ()
    _starts: list[int] = field(default_factory=list)
    _names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, config: AnalyzerConfig, *, strict: bool, book: ConfigBook | None = None
    ) -> Scorings:
        """``config`` as every version this build re-derives, and ``book``'s promotions.

        With ``strict``, only the current analyzer version is re-derived.
        """
        versions = (ANALYZER_VERSION,) if strict else REDERIVABLE_VERSIONS
        promoted: list[LiveScoring] = []
        for promotion in book.promotions if book is not None else ():
            loaded = load_promoted(book, promotion) if book is not None else "no book"
            config_or_none, problem = (None, loaded) if isinstance(loaded, str) else (loaded, None)
            if config_or_none is not None and config_or_none.analyzer_version not in versions:
                problem = f"analyzer {config_or_none.analyzer_version} is not re-derived"
                config_or_none = None
            promoted.append(
                LiveScoring(
                    promotion.effective_from,
                    promotion.version,
                    promotion.data.fingerprint,
                    config_or_none,
                    problem,
                )
            )
        names = {p.data.fingerprint: p.version for p in (book.proposals.values() if book else ())}
        return cls(
            config,
            {version: config.for_version(version) for version in versions},
            tuple(promoted),
            [p.effective_from for p in promoted],
            names,
        )

    def live_at(self, sequence: int) -> LiveScoring | None:
        """The promotion live for the evidence at ``sequence`` (``None``: before any)."""
        index = bisect.bisect_right(self._starts, sequence) - 1
        return self.promoted[index] if index >= 0 else None

    def version_named(self, fingerprint: str) -> str | None:
        """The proposed config version with this fingerprint, if any."""
        return self._names.get(fingerprint)

    def config_for(
        self, version: object, fingerprint: object, sequence: int = 0
    ) -> AnalyzerConfig | None:
        """The config of an assessment of evidence ``sequence``, if it is the one live there.

        The assessment recorded ``version`` and ``fingerprint``: both must be
        the live config's (before any promotion: the replay's own config as
        that version used it).
        """
        live = self.live_at(sequence) if self._starts else None
        if live is not None:
            config = live.config
            if config is None or config.analyzer_version != version:
                return None
        else:
            config = self.by_version.get(version) if isinstance(version, str) else None
        return config if config is not None and config.fingerprint() == fingerprint else None

    def limits(self, sequence: int) -> AnalyzerConfig:
        """The config whose enrichment bounds hold at evidence ``sequence``."""
        live = self.live_at(sequence) if self._starts else None
        return live.config if live is not None and live.config is not None else self.current

    def impossible(self, scored: Scoring, config: AnalyzerConfig, sequence: int = 0) -> str | None:
        """Why the enrichment ``scored`` claims is outside what the live config allows.

        ``config`` scored it; the modifier it applied must lie within the
        bounds of the config live at ``sequence``, whatever the analyzer
        version that recorded it.
        """
        if scored.enrichment is None:
            return None
        applied = applied_modifier(scored.enrichment, config=config)
        bounds = self.limits(sequence)
        lowest = bounds.enrichment_min_modifier
        highest = bounds.enrichment_max_modifier
        if lowest <= applied <= highest:
            return None
        return (
            f"impossible enrichment: {scored.enrichment.provider} answered"
            f" {scored.enrichment.modifier!r}, applied as {applied!r}, outside the bounds"
            f" [{lowest!r}, {highest!r}] config {bounds.fingerprint()[:12]} allows"
        )


def derive(
    config: AnalyzerConfig, state: EntityRiskState, evidence: Evidence, recorded: Scoring
) -> tuple[Assessment, EntityRiskState]:
    """Score as the projection did: conservatively when degraded, with the recorded signal.

    Raises:
        AnalyzerError: the analyzer refuses (e.g. the evidence is already in the state).
    """
    if recorded.degraded:
        return conservative_assessment(state, evidence, config=config, review=recorded.review)
    return assess(
        state, evidence, config=config, enrichment=recorded.enrichment, review=recorded.review
    )


def compare(
    data: RiskAssessedData,
    expected: tuple[str, EvidenceRef, Assessment, EntityRiskState],
) -> FieldDifference | None:
    """The first field where the record differs from ``(projection, ref, assessment, state)``.

    Byte-identical means the fields are equal *and* the canonical JSON of the
    two assessments is the same text; ``None`` then.
    """
    projection, ref, assessment, state = expected
    same = (
        data.projection == projection
        and data.evidence == ref
        and data.assessment == assessment
        and data.state == state
    )
    recorded_json = data.assessment.canonical_json()
    if same and recorded_json == assessment.canonical_json():
        return None
    found = first_difference(
        _comparable(data.projection, data.evidence, data.assessment, data.state),
        _comparable(*expected),
    )
    return found or FieldDifference(
        "assessment (canonical JSON)", recorded_json, assessment.canonical_json()
    )


def _comparable(
    projection: str, ref: EvidenceRef, assessment: Assessment, state: EntityRiskState
) -> dict[str, object]:
    return {
        "projection": projection,
        "evidence": ref.model_dump(mode="json"),
        "assessment": assessment.model_dump(mode="json"),
        "state": state.model_dump(mode="json"),
    }


@dataclass(frozen=True, slots=True)
class ByteVerifier:
    """Verifies the common case, an identical assessment, by comparing bytes.

    Validating a recorded assessment and comparing it field by field costs
    more than the rest of a replay. The codec is canonical, so the assessment
    the projection stored is, byte for byte, the recorded envelope encoded
    with the re-derived data (with the recorded ``cursor``, which is not
    compared). Equal bytes prove the record valid and identical at once.
    Anything else gives ``None``, and the caller takes the precise path, so
    findings and their wording never depend on this one.
    """

    store: EventStore
    scorings: Scorings
    projection: str

    def verified(
        self, state: EntityRiskState, raw: RawMessage, stored: StoredAssessment
    ) -> EntityRiskState | None:
        """The re-derived state after evidence ``raw`` if ``stored`` is its identical assessment.

        The expected bytes are the event the projection would have written, with
        the recorded ``time`` and ``cursor``: those are the only values taken
        from the record, and only in the form the encoder writes them.
        """
        recorded = stored.value  # a dict: the join checked it holds the evidence sequence
        data = recorded["data"]
        scored = data.get("assessment")
        cursor = data.get("cursor")
        if (
            not isinstance(scored, dict)
            or (
                config := self.scorings.config_for(
                    scored.get("analyzer_version"), scored.get("config_fingerprint"), raw.seq
                )
            )
            is None
            or type(degraded := scored.get("degraded", False)) is not bool
            or type(cursor) is not int  # not a bool either
            or cursor < 1
            or (time := _instant(recorded.get("time"))) is None
        ):
            return None
        try:
            event, evidence, ref = _decoded_evidence(self.store, raw)
            signal = scored.get("enrichment")
            enrichment = None if signal is None else EnrichmentSignal.model_validate(signal)
            decisions = scored.get("review")
            review = None if decisions is None else ReviewSignal.model_validate(decisions)
            how = _Scored(degraded, enrichment, review)
            if self.scorings.impossible(how, config, raw.seq) is not None:
                return None
            assessment, after = derive(config, state, evidence, how)
        except (*UNASSESSABLE, ValidationError):
            return None
        envelope, expected = assessment_event(
            self.projection,
            event,
            ref,
            assessment,
            after,
            entity=stored.key,
            cursor=cursor,
            time=time,
        )
        return after if encode_event(envelope, expected) == stored.raw.data else None


def _instant(value: object) -> datetime | None:
    """An aware time from its ISO 8601 text; ``None`` if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
