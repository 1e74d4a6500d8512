"""``riskpipe shadow report``: what a shadow run would have changed, compared with live.

Live assessments (``RISK``, the live projection's) and one version's shadow
assessments (``SHADOW``) are paired by the evidence they assess: its stream
sequence, which every assessment records. The period selects evidence by the
time it was stored in ``EVIDENCE`` (as ``riskpipe replay --since`` does), so
both sides are compared on the same evidence whenever each was scored.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzers import RiskLevel
from eventstore.errors import DecodeError
from projections.audit import first_stored_after
from projections.learning import read_config_book
from projections.risk import ASSESSED, RiskAssessedData
from projections.shadow._events import (
    SHADOW_ASSESSED,
    SHADOW_STREAM,
    shadow_filter,
    shadow_projection,
)

if TYPE_CHECKING:
    from datetime import datetime

    from eventstore import EventStore

__all__ = [
    "EntityChange",
    "ShadowNotRunError",
    "ShadowReport",
    "shadow_report",
]

_LEVELS: tuple[RiskLevel, ...] = tuple(RiskLevel)
_RANK = {level: rank for rank, level in enumerate(_LEVELS)}
EXAMPLES = 5
"""Entities listed, at most, as examples of those flagged and those cleared."""


class ShadowNotRunError(Exception):
    """The version was proposed, but no shadow run of it has written anything."""

    def __init__(self, version: str) -> None:
        super().__init__(
            f"config version {version!r} has never run in shadow (no shadow assessments):"
            f" start one with `riskpipe worker --shadow {version}`"
        )
        self.version = version


@dataclass(frozen=True, slots=True)
class EntityChange:
    """An entity the shadow config would have flagged (or cleared): its highest levels."""

    tenant: str
    entity: str
    live_level: RiskLevel
    shadow_level: RiskLevel
    live_score: float
    shadow_score: float
    evidence: int
    """The first evidence sequence at which the shadow crossed the threshold (or live did)."""

    def as_dict(self) -> dict[str, Any]:
        """The entity as JSON-ready values."""
        return {
            "tenant": self.tenant,
            "entity": self.entity,
            "live_level": self.live_level.value,
            "shadow_level": self.shadow_level.value,
            "live_score": round(self.live_score, 6),
            "shadow_score": round(self.shadow_score, 6),
            "evidence": self.evidence,
        }


@dataclass(slots=True)
class _Entity:
    """Per entity, over the compared evidence: highest levels and scores, first crossings."""

    live_level: RiskLevel = RiskLevel.LOW
    shadow_level: RiskLevel = RiskLevel.LOW
    live_score: float = 0.0
    shadow_score: float = 0.0
    live_first: int | None = None
    shadow_first: int | None = None


@dataclass(slots=True)
class ShadowReport:
    """Live against one shadow run over a range of evidence."""

    version: str
    fingerprint: str
    """The proposed config's fingerprint (what the shadow assessments should carry)."""
    live_projection: str
    threshold: RiskLevel
    from_seq: int
    until_seq: int
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    live_assessments: int = 0
    shadow_assessments: int = 0
    compared: int = 0
    shadow_missing: int = 0
    """Evidence of the range assessed live, not (yet) by the shadow run: its lag."""
    live_missing: int = 0
    """Evidence of the range assessed by the shadow run, not (yet) live."""
    shadow_last_evidence: int = 0
    """The highest evidence sequence the shadow run assessed (anywhere, in its scope)."""
    matrix: Counter[tuple[RiskLevel, RiskLevel]] = field(default_factory=Counter)
    flagged: list[EntityChange] = field(default_factory=list)
    cleared: list[EntityChange] = field(default_factory=list)
    live_alerts: int = 0
    shadow_alerts: int = 0
    live_alert_entities: int = 0
    shadow_alert_entities: int = 0
    deltas: list[float] = field(default_factory=list)
    """|shadow score - live score| of each compared evidence."""
    shadow_fingerprints: Counter[str] = field(default_factory=Counter)
    live_fingerprints: Counter[str] = field(default_factory=Counter)

    @property
    def raised(self) -> int:
        """Compared evidence the shadow put at a higher level than live."""
        return sum(n for (a, b), n in self.matrix.items() if _RANK[b] > _RANK[a])

    @property
    def lowered(self) -> int:
        """Compared evidence the shadow put at a lower level than live."""
        return sum(n for (a, b), n in self.matrix.items() if _RANK[b] < _RANK[a])

    def delta(self) -> dict[str, float]:
        """Mean, p50, p95 and max of |score delta| (nearest rank; zeros when none)."""
        values = sorted(self.deltas)
        if not values:
            return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
        return {
            "mean": round(sum(values) / len(values), 6),
            "p50": round(_percentile(values, 0.50), 6),
            "p95": round(_percentile(values, 0.95), 6),
            "max": round(values[-1], 6),
        }

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``--json`` prints)."""
        return {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "live_projection": self.live_projection,
            "shadow_projection": shadow_projection(self.version),
            "period": {
                "by": "evidence stored time",
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "from_seq": self.from_seq,
                "until_seq": self.until_seq,
                "tenant": self.tenant,
            },
            "live_assessments": self.live_assessments,
            "shadow_assessments": self.shadow_assessments,
            "compared": self.compared,
            "shadow_missing": self.shadow_missing,
            "live_missing": self.live_missing,
            "shadow_last_evidence": self.shadow_last_evidence,
            "changed": self.raised + self.lowered,
            "raised": self.raised,
            "lowered": self.lowered,
            "levels": {
                live.value: {shadow.value: self.matrix[live, shadow] for shadow in _LEVELS}
                for live in _LEVELS
            },
            "threshold": self.threshold.value,
            "flagged": len(self.flagged),
            "flagged_examples": [e.as_dict() for e in self.flagged[:EXAMPLES]],
            "cleared": len(self.cleared),
            "cleared_examples": [e.as_dict() for e in self.cleared[:EXAMPLES]],
            "alerts": {
                "live_assessments": self.live_alerts,
                "shadow_assessments": self.shadow_alerts,
                "live_entities": self.live_alert_entities,
                "shadow_entities": self.shadow_alert_entities,
            },
            "score_delta": self.delta(),
            "shadow_fingerprints": dict(self.shadow_fingerprints),
            "live_fingerprints": dict(self.live_fingerprints),
        }


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


async def _range(
    store: EventStore, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """The evidence sequences stored in the period (``since`` inclusive, ``until`` inclusive)."""
    stream = store.config.stream_for("evidence")
    last = int((await store.stream_state(stream))["last_seq"])
    first = 1 if since is None else await first_stored_after(store, since, inclusive=True)
    end = last if until is None else await first_stored_after(store, until, inclusive=False) - 1
    return first, end


async def _assessments(
    store: EventStore,
    *,
    category: str,
    filter_subject: str | None,
    type_: str,
    projection: str,
) -> dict[int, tuple[str, str, RiskAssessedData]]:
    """Assessments of ``type_`` by ``projection`` on the category's stream, by evidence sequence.

    The evidence stream's only: an assessment of another stream's evidence
    (written before the stream was renamed) cannot be paired by sequence.
    """
    found: dict[int, tuple[str, str, RiskAssessedData]] = {}
    evidence = store.config.stream_for("evidence")
    batches = store.read_batches(
        stream=store.config.stream_for(category), filter_subject=filter_subject
    )
    async for batch in batches:
        for raw in batch:
            try:
                event, data = store.decoded(raw)
            except DecodeError:
                continue  # not an assessment: skipped, as the projection skips it
            if (
                event.type != type_
                or not isinstance(data, RiskAssessedData)
                or data.projection != projection
                or data.evidence.stream != evidence
            ):
                continue
            found[data.evidence.sequence] = (event.tenant or "", event.subject or "", data)
    return found


async def shadow_report(  # noqa: PLR0913 - the report's scope, keyword-only
    store: EventStore,
    version: str,
    *,
    live_projection: str = "risk",
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
    threshold: RiskLevel = RiskLevel.HIGH,
) -> ShadowReport:
    """Compare the live assessments with shadow run ``version``'s over the period.

    Raises:
        UnknownConfigVersionError: ``version`` was never proposed.
        ShadowNotRunError: it was, but no shadow assessment of it exists.
        InvalidShadowVersionError: ``version`` is not a version name.
        ValueError: ``tenant`` is not a valid token.
    """
    subjects = shadow_filter(store.config, version, tenant)
    proposal = (await read_config_book(store)).proposal(version)
    shadow_stream = store.config.stream_for(SHADOW_STREAM.category)
    everything = shadow_filter(store.config, version)
    if await store.client.direct_get(shadow_stream, 1, next_by_subject=everything) is None:
        raise ShadowNotRunError(version)
    first, end = await _range(store, since, until)
    report = ShadowReport(
        version=version,
        fingerprint=proposal.data.fingerprint,
        live_projection=live_projection,
        threshold=threshold,
        from_seq=first,
        until_seq=end,
        tenant=tenant,
        since=since,
        until=until,
    )
    live_filter = None if tenant is None else f"{store.config.prefix}.risk.{tenant}.>"
    live = await _assessments(
        store, category="risk", filter_subject=live_filter, type_=ASSESSED,
        projection=live_projection,
    )  # fmt: skip
    shadow = await _assessments(
        store, category=SHADOW_STREAM.category, filter_subject=subjects, type_=SHADOW_ASSESSED,
        projection=shadow_projection(version),
    )  # fmt: skip
    report.shadow_last_evidence = max(shadow, default=0)
    _compare(report, live, shadow)
    return report


def _compare(
    report: ShadowReport,
    live: dict[int, tuple[str, str, RiskAssessedData]],
    shadow: dict[int, tuple[str, str, RiskAssessedData]],
) -> None:
    """Fill the report's counts from the two sides, paired by evidence sequence."""
    in_range = range(report.from_seq, report.until_seq + 1)
    live_seqs = {s for s in live if s in in_range}
    shadow_seqs = {s for s in shadow if s in in_range}
    report.live_assessments = len(live_seqs)
    report.shadow_assessments = len(shadow_seqs)
    report.shadow_missing = len(live_seqs - shadow_seqs)
    report.live_missing = len(shadow_seqs - live_seqs)
    entities: dict[tuple[str, str], _Entity] = {}
    limit = _RANK[report.threshold]
    for sequence in sorted(live_seqs & shadow_seqs):
        tenant, entity, before = live[sequence]
        after = shadow[sequence][2]
        a, b = before.assessment, after.assessment
        report.compared += 1
        report.matrix[a.level, b.level] += 1
        report.deltas.append(abs(b.score - a.score))
        report.live_fingerprints[a.config_fingerprint] += 1
        report.shadow_fingerprints[b.config_fingerprint] += 1
        seen = entities.setdefault((tenant, entity), _Entity())
        if _RANK[a.level] >= limit:
            report.live_alerts += 1
            seen.live_first = seen.live_first or sequence
        if _RANK[b.level] >= limit:
            report.shadow_alerts += 1
            seen.shadow_first = seen.shadow_first or sequence
        seen.live_level = max(seen.live_level, a.level, key=_RANK.__getitem__)
        seen.shadow_level = max(seen.shadow_level, b.level, key=_RANK.__getitem__)
        seen.live_score = max(seen.live_score, a.score)
        seen.shadow_score = max(seen.shadow_score, b.score)
    for (tenant, entity), seen in sorted(entities.items()):
        report.live_alert_entities += seen.live_first is not None
        report.shadow_alert_entities += seen.shadow_first is not None
        change = None
        if seen.shadow_first is not None and seen.live_first is None:
            change = report.flagged
            first = seen.shadow_first
        elif seen.live_first is not None and seen.shadow_first is None:
            change = report.cleared
            first = seen.live_first
        if change is not None:
            change.append(
                EntityChange(
                    tenant,
                    entity,
                    seen.live_level,
                    seen.shadow_level,
                    seen.live_score,
                    seen.shadow_score,
                    first,
                )
            )
