"""Why an entity has its level: its timeline from the log, up to a moment or a sequence.

The timeline is what the log recorded, read without side effects: each
evidence event, the assessment it produced or its dead letter (with what
operators did about it), and where the level changed. ``riskpipe replay``
says whether those assessments are what the analyzer gives today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzers import EvidenceDataV2
from projections import REPLAY_HEADER
from projections.audit._records import (
    DeadLetterRef,
    DlqAction,
    EvidenceOutcome,
    RecordedAssessment,
    ack_floor,
    dead_letters,
    outcome_of,
    read_assessment,
)
from projections.audit._scope import ReplayScope, first_stored_after
from projections.audit.errors import InvalidScopeError

if TYPE_CHECKING:
    from datetime import datetime

    from eventstore import EventStore, RecordedEvent

__all__ = ["Explanation", "TimelineEntry", "explain"]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One evidence event of the entity, and what became of it."""

    sequence: int
    stored_at: datetime
    outcome: EvidenceOutcome
    evidence: EvidenceDataV2 | None
    """The evidence as the analyzer read it: every version of evidence as the latest."""
    evidence_id: str | None
    source: str | None
    time: datetime | None
    error: str | None
    """Why the stored message is not valid evidence, if it is not."""
    replay_of: int | None
    assessment: RecordedAssessment | None
    dead_letter: DeadLetterRef | None
    actions: tuple[DlqAction, ...] = ()

    @property
    def level_changed(self) -> bool:
        """Whether the assessment it produced moved the level."""
        a = self.assessment.data.assessment if self.assessment else None
        return a is not None and a.level != a.previous_level

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "sequence": self.sequence,
            "stored_at": self.stored_at.isoformat(),
            "outcome": self.outcome,
            "evidence_id": self.evidence_id,
            "source": self.source,
            "time": self.time.isoformat() if self.time else None,
            "evidence": _evidence_document(self.evidence) if self.evidence else None,
            "error": self.error,
            "replay_of": self.replay_of,
            "assessment": _assessment_summary(self.assessment) if self.assessment else None,
            "level_changed": self.level_changed,
            "dead_letter": _letter_summary(self.dead_letter, self.actions)
            if self.dead_letter
            else None,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """An entity's timeline up to a point, and the assessment in force there."""

    tenant: str
    entity: str
    at: datetime | None
    seq: int | None
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def current(self) -> RecordedAssessment | None:
        """The latest assessment of the timeline: what was in force at that point."""
        for entry in reversed(self.timeline):
            if entry.assessment is not None:
                return entry.assessment
        return None

    @property
    def level_changes(self) -> list[TimelineEntry]:
        """The entries whose assessment moved the level."""
        return [entry for entry in self.timeline if entry.level_changed]

    def counts(self) -> dict[str, int]:
        """How many evidence events ended which way."""
        out = dict.fromkeys(("assessed", "dead_lettered", "pending", "missing"), 0)
        for entry in self.timeline:
            out[entry.outcome] += 1
        return {"evidence": len(self.timeline), **out}

    def as_dict(self) -> dict[str, Any]:
        """The explanation as one JSON-ready document."""
        current = self.current
        return {
            "tenant": self.tenant,
            "entity": self.entity,
            "at": self.at.isoformat() if self.at else None,
            "seq": self.seq,
            "counts": self.counts(),
            "current": _current(current) if current else None,
            "level_changes": [
                {
                    "evidence_sequence": e.sequence,
                    "assessment_sequence": e.assessment.sequence,
                    "from": e.assessment.data.assessment.previous_level.value,
                    "to": e.assessment.data.assessment.level.value,
                    "stored_at": e.stored_at.isoformat(),
                }
                for e in self.level_changes
                if e.assessment is not None
            ],
            "timeline": [entry.as_dict() for entry in self.timeline],
        }


async def explain(  # noqa: PLR0913 - the entity and where to stop, keyword-only options
    store: EventStore,
    tenant: str,
    entity: str,
    *,
    at: datetime | None = None,
    seq: int | None = None,
    projection: str = "risk",
) -> Explanation:
    """The entity's timeline up to the evidence stored at or before ``at``, or up to ``seq``.

    Without either, the whole timeline. DLQ actions are included as of that
    point: recorded by ``at``, or (with ``seq``) replays into evidence at or before it.

    Raises:
        InvalidScopeError: both ``at`` and ``seq``, or a tenant or entity that is not a token.
    """
    if at is not None and seq is not None:
        raise InvalidScopeError("give a time or a sequence, not both")
    scope = ReplayScope(tenant, entity)
    floor = await ack_floor(store, projection)
    letters = await dead_letters(store, projection, scope)
    assessments = await _assessments(store, tenant, entity)
    explanation = Explanation(tenant, entity, at, seq)
    until = seq if at is None else await first_stored_after(store, at, inclusive=False) - 1
    subject = store.config.stored_subject("evidence", tenant, entity)
    async for rec in store.read_all(until_seq=until, filter_subject=subject):
        entry = _entry(
            store,
            rec,
            assessment=assessments.get(rec.sequence),
            letter=letters.get(rec.sequence),
            floor=floor,
            cut=(at, seq),
        )
        explanation.timeline.append(entry)
    return explanation


async def _assessments(
    store: EventStore, tenant: str, entity: str
) -> dict[int, RecordedAssessment]:
    """The entity's first recorded assessment of each evidence sequence."""
    found: dict[int, RecordedAssessment] = {}
    async for rec in store.read(tenant, entity, category="risk"):
        recorded = read_assessment(store, rec)
        if isinstance(recorded, RecordedAssessment):
            found.setdefault(recorded.data.evidence.sequence, recorded)
    return found


def _entry(  # noqa: PLR0913 - one record and everything known about it
    store: EventStore,
    rec: RecordedEvent,
    *,
    assessment: RecordedAssessment | None,
    letter: DeadLetterRef | None,
    floor: int,
    cut: tuple[datetime | None, int | None],
) -> TimelineEntry:
    event = rec.event
    data: EvidenceDataV2 | None = None
    error = str(rec.error) if rec.error else None
    if event is not None:
        typed = store.schemas.upcast(event, store.schemas.typed_data(event))[1]
        data = typed if isinstance(typed, EvidenceDataV2) else None
        error = None if data is not None else f"not evidence: {event.type}"
    replay_of = rec.headers.get(REPLAY_HEADER)
    outcome = outcome_of(
        rec.sequence, assessed=assessment is not None, dead_lettered=letter is not None,
        ack_floor=floor,
    )  # fmt: skip
    return TimelineEntry(
        sequence=rec.sequence,
        stored_at=rec.stored_at,
        outcome=outcome,
        evidence=data,
        evidence_id=event.id if event else None,
        source=event.source if event else None,
        time=event.time if event else None,
        error=error,
        replay_of=int(replay_of) if replay_of and replay_of.isdigit() else None,
        assessment=assessment,
        dead_letter=letter,
        actions=_actions_until(letter, *cut) if letter else (),
    )


def _actions_until(
    letter: DeadLetterRef, at: datetime | None, seq: int | None
) -> tuple[DlqAction, ...]:
    def done(action: DlqAction) -> bool:
        if at is not None:
            return action.recorded_at <= at
        if seq is not None and action.replayed_as is not None:
            return action.replayed_as <= seq
        return True

    return tuple(action for action in letter.actions if done(action))


def _evidence_document(data: EvidenceDataV2) -> dict[str, Any]:
    """Evidence data as JSON, its ``confidence`` ``None`` when the producer reported none.

    ``confidence_used`` is the value the analyzer scored with (the default 1.0
    when none was reported), so the two are never confused.
    """
    document = data.model_dump(mode="json")
    if "confidence" not in data.model_fields_set:
        document["confidence"] = None
    document["confidence_used"] = data.confidence
    return document


def _assessment_summary(recorded: RecordedAssessment) -> dict[str, Any]:
    a = recorded.data.assessment
    return {
        "sequence": recorded.sequence,
        "level": a.level.value,
        "previous_level": a.previous_level.value,
        "score": a.score,
        "confidence": a.confidence,
        "degraded": a.degraded,
    }


def _current(recorded: RecordedAssessment) -> dict[str, Any]:
    a = recorded.data.assessment
    contributions = sorted(a.contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return {
        "evidence_sequence": recorded.data.evidence.sequence,
        "assessment_sequence": recorded.sequence,
        "as_of": a.as_of.isoformat(),
        "level": a.level.value,
        "score": a.score,
        "confidence": a.confidence,
        "confidence_factors": a.confidence_factors,
        "contributions": [{"feature": name, "share": share} for name, share in contributions],
        "recommendations": list(a.recommendations),
        "patterns": list(a.patterns),
        "degraded": a.degraded,
        "enrichment": a.enrichment.model_dump(mode="json") if a.enrichment else None,
        "review": a.review.model_dump(mode="json") if a.review else None,
        "analyzer_version": a.analyzer_version,
        "config_fingerprint": a.config_fingerprint,
    }


def _letter_summary(letter: DeadLetterRef, actions: tuple[DlqAction, ...]) -> dict[str, Any]:
    return {
        "dlq_sequence": letter.dlq_sequence,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "dead_lettered_at": letter.dead_lettered_at.isoformat()
        if letter.dead_lettered_at
        else None,
        "actions": [
            {
                "kind": action.kind,
                "audit_sequence": action.audit_sequence,
                "recorded_at": action.recorded_at.isoformat(),
                "actor": action.actor,
                "reason": action.reason,
                "replayed_as": action.replayed_as,
            }
            for action in actions
        ],
    }
