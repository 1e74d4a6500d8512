"""A world for shadow runs: evidence, a more sensitive proposed config, and expected outcomes.

The expected outcomes are computed here by scoring the stored evidence with
the analyzer directly, entity by entity, for each config: independent of the
projection, the stream layout and the report.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from support.events import evidence

from analyzers import (
    AnalyzerConfig,
    Assessment,
    EntityRiskState,
    Evidence,
    LevelThresholds,
    RiskLevel,
    SeverityWeights,
    assess,
)
from projections.learning import propose, read_config_book
from projections.review import Actor
from projections.risk import latest_evidence
from riskpipe.settings import Settings
from riskpipe.worker import Worker, shadow_run

if TYPE_CHECKING:
    from eventstore import EventStore

VERSION = "sensitive-1"
LIVE = AnalyzerConfig()
SENSITIVE = AnalyzerConfig(
    thresholds=LevelThresholds(medium=0.2, high=0.4, critical=0.7),
    severity_weights=SeverityWeights(low=0.15, medium=0.35, high=0.7, critical=1.0),
)
"""Heavier weights and lower thresholds: flags entities that live leaves below high."""
OPS = Actor(name="olga", role="operator")
_RANK = {level: n for n, level in enumerate(RiskLevel)}
# severities per entity: some stay low live but reach high with SENSITIVE, some are high anyway
PLAN = {
    "quiet": ["low"],
    "mild": ["low", "medium"],
    "warm": ["medium", "medium"],
    "busy": ["medium", "high", "low"],
    "hot": ["high", "critical", "critical", "high"],
    "other": ["low", "low", "medium"],
}


def _clock() -> datetime:
    return datetime(2026, 12, 6, tzinfo=UTC)


async def propose_sensitive(store: EventStore, version: str = VERSION) -> None:
    """Propose :data:`SENSITIVE` as ``version``."""
    book = await read_config_book(store)
    await propose(store, book, SENSITIVE, version=version, by=OPS, clock=_clock, reason="test")


async def publish_world(store: EventStore, *, tenant: str = "t1", prefix: str = "w") -> int:
    """Append :data:`PLAN`'s evidence, interleaved across entities; how many events."""
    events = []
    for round_ in range(max(len(s) for s in PLAN.values())):
        for entity, severities in PLAN.items():
            if round_ < len(severities):
                n = len(events)
                events.append(
                    evidence(
                        f"{prefix}{n}",
                        tenant=tenant,
                        entity=entity,
                        severity=severities[round_],
                        pattern=f"p{round_}",
                        minute=n,
                    )
                )
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]
    return len(events)


async def run_with_shadow(store: EventStore, url: str, version: str = VERSION) -> Worker:
    """A worker in this process, with a shadow run of ``version``, until nothing is pending."""
    settings = Settings(nats_url=url, fetch_timeout=0.2)
    worker = Worker(store, settings, CollectorRegistry(), shadow=await shadow_run(store, version))
    async with asyncio.timeout(60):
        await worker.run(asyncio.Event(), until_idle=True, http=False)
    return worker


@dataclass
class Expected:
    """What the report must say, from scoring with the analyzer directly."""

    live: dict[int, Assessment] = field(default_factory=dict)
    shadow: dict[int, Assessment] = field(default_factory=dict)
    entity_of: dict[int, tuple[str, str]] = field(default_factory=dict)

    def matrix(self) -> dict[str, dict[str, int]]:
        """Counts of (live level, shadow level), as the report's ``levels``."""
        counts = Counter((self.live[s].level, self.shadow[s].level) for s in self.live)
        return {a.value: {b.value: counts[a, b] for b in RiskLevel} for a in RiskLevel}

    def alerts(self, side: dict[int, Assessment]) -> tuple[int, int]:
        """Assessments at high or above, and entities with one."""
        hits = [s for s, a in side.items() if _RANK[a.level] >= _RANK[RiskLevel.HIGH]]
        return len(hits), len({self.entity_of[s] for s in hits})

    def flagged(self) -> list[str]:
        """Entities at high or above in shadow only (sorted)."""
        return sorted(e for _, e in self._alerting(self.shadow) - self._alerting(self.live))

    def cleared(self) -> list[str]:
        """Entities at high or above live only (sorted)."""
        return sorted(e for _, e in self._alerting(self.live) - self._alerting(self.shadow))

    def _alerting(self, side: dict[int, Assessment]) -> set[tuple[str, str]]:
        return {
            self.entity_of[s] for s, a in side.items() if _RANK[a.level] >= _RANK[RiskLevel.HIGH]
        }

    def deltas(self) -> list[float]:
        """|shadow score - live score| of each evidence, sorted."""
        return sorted(abs(self.shadow[s].score - self.live[s].score) for s in self.live)


async def expected(store: EventStore) -> Expected:
    """Score every stored evidence with :data:`LIVE` and :data:`SENSITIVE`, per entity, in order."""
    out = Expected()
    states: dict[tuple[str, str], dict[str, EntityRiskState]] = defaultdict(
        lambda: {"live": EntityRiskState.initial(), "shadow": EntityRiskState.initial()}
    )
    async for rec in store.read_all():
        assert rec.event is not None
        event, data = latest_evidence(store.schemas, rec.event)
        item = Evidence.from_data(
            data, event_id=event.id, source=event.source, sequence=rec.sequence,
            event_time=event.time,
        )  # fmt: skip
        key = (event.tenant or "", event.subject or "")
        out.entity_of[rec.sequence] = key
        for side, config, into in (("live", LIVE, out.live), ("shadow", SENSITIVE, out.shadow)):
            assessment, states[key][side] = assess(states[key][side], item, config=config)
            into[rec.sequence] = assessment
    return out


async def stored(store: EventStore, stream: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every message of ``stream``: its subject, type and data."""
    found = []
    async for rec in store.read_all(stream=stream):
        assert rec.event is not None, rec.error
        found.append((rec.subject, rec.event.type, rec.event.data or {}))
    return found
