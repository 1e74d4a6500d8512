"""Time-decayed aggregates: folding evidence into them and reading them later.

Every sum decays exponentially with the configured half-life: a contribution
``x`` observed at ``t`` is worth ``x * 0.5 ** ((now - t) / half_life)`` at
``now``. Sums are kept valued at the state's ``as_of`` (the newest evidence
time), so moving them forward is one multiplication each, and evidence
arriving out of order is folded exactly as if it had arrived in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - dataclass fields are resolved at runtime
from typing import TYPE_CHECKING, TypeVar

from analyzers._evidence import Severity

if TYPE_CHECKING:
    from collections.abc import Mapping

    from analyzers._config import Tables
    from analyzers._evidence import Evidence
    from analyzers._state import Aggregate, EntityRiskState

__all__ = ["Features", "Window", "advance", "decay", "features", "fold"]

K = TypeVar("K", str, Severity)


def decay(seconds: float, half_life: float) -> float:
    """The factor a sum keeps after ``seconds``: it halves every ``half_life`` seconds."""
    return 0.5 ** (seconds / half_life) if seconds > 0.0 else 1.0


@dataclass(slots=True)
class Window:
    """The aggregates of a state after one more piece of evidence, valued at ``as_of``."""

    as_of: datetime
    evidence_count: float
    reported_count: float
    freshness: float
    patterns: dict[str, Aggregate]
    severities: dict[Severity, Aggregate]
    sources: dict[str, datetime]


def fold(state: EntityRiskState, evidence: Evidence, tables: Tables) -> Window:
    """The aggregates of ``state`` with ``evidence`` added, valued at the new ``as_of``."""
    observed = evidence.observed_at
    previous = state.as_of
    half_life = tables.half_life
    if previous is None or observed >= previous:
        as_of = observed
        kept = decay((observed - previous).total_seconds(), half_life) if previous else 1.0
        weight = 1.0
    else:
        as_of = previous
        kept = 1.0
        weight = decay((previous - observed).total_seconds(), half_life)
    cutoff = as_of - tables.window_span
    mass = tables.severity_weights[evidence.severity] * evidence.confidence * weight
    patterns = advance(state.patterns, kept, cutoff)
    severities = advance(state.severities, kept, cutoff)
    if observed >= cutoff:
        patterns = _add(patterns, evidence.pattern, mass, observed)
        severities = _add(severities, evidence.severity, evidence.confidence * weight, observed)
    return Window(
        as_of,
        state.evidence_count * kept + weight,
        state.reported_count * kept + (weight if evidence.confidence_reported else 0.0),
        state.freshness * kept + weight * decay(evidence.lag_seconds, half_life),
        _evicted(patterns, tables.max_patterns),
        severities,
        _seen(state.sources, evidence.source, observed, cutoff, tables.full_sources),
    )


def advance(aggregates: Mapping[K, Aggregate], kept: float, cutoff: datetime) -> dict[K, Aggregate]:
    """``aggregates`` scaled by ``kept``, without the entries last seen before ``cutoff``."""
    if kept == 1.0:
        return {key: entry for key, entry in aggregates.items() if entry[1] >= cutoff}
    return {
        key: (value * kept, last) for key, (value, last) in aggregates.items() if last >= cutoff
    }


def _add(aggregates: dict[K, Aggregate], key: K, amount: float, at: datetime) -> dict[K, Aggregate]:
    """``aggregates`` with ``amount`` added under ``key``; keys stay sorted."""
    entry = aggregates.get(key)
    if entry is not None:
        aggregates[key] = (entry[0] + amount, max(entry[1], at))
        return aggregates
    aggregates[key] = (amount, at)
    return dict(sorted(aggregates.items())) if len(aggregates) > 1 else aggregates


def _evicted(patterns: dict[str, Aggregate], limit: int) -> dict[str, Aggregate]:
    """Drop the smallest patterns beyond ``limit``; that never lowers the total mass."""
    excess = len(patterns) - limit
    if excess <= 0:
        return patterns
    ranked = sorted(patterns, key=lambda pattern: (patterns[pattern][0], pattern))
    dropped = set(ranked[:excess])
    return {pattern: entry for pattern, entry in patterns.items() if pattern not in dropped}


def _seen(
    sources: Mapping[str, datetime], source: str, at: datetime, cutoff: datetime, keep: int
) -> dict[str, datetime]:
    """Sources seen in the window; only the ``keep`` most recent matter for diversity."""
    seen = {name: last for name, last in sources.items() if last >= cutoff}
    last = seen.get(source)
    if at < cutoff or (last is not None and last >= at):
        return seen
    seen[source] = at
    if last is None:
        while len(seen) > keep:
            del seen[min(seen, key=lambda name: (seen[name], name))]
    return seen


class Features:
    """The raw (unsaturated) feature values of the evidence score, and that score."""

    __slots__ = ("critical", "diversity", "evidence", "raw", "score")

    def __init__(
        self, evidence: dict[str, float], critical: float, diversity: float, saturation: float
    ) -> None:
        self.evidence = evidence
        self.critical = critical
        self.diversity = diversity
        self.raw = sum(evidence.values()) + critical + diversity
        self.score = 1.0 - 0.5 ** (self.raw / saturation) if self.raw > 0.0 else 0.0

    def contributions(self, enrichment: float | None) -> dict[str, float]:
        """Each feature's share of the score, keys sorted; the shares sum to the score.

        Args:
            enrichment: the enrichment's share (final score minus ``score``), if any.
        """
        scale = self.score / self.raw if self.raw > 0.0 else 0.0
        shares = {"critical_amplification": self.critical * scale}
        if enrichment is not None:
            shares["enrichment"] = enrichment
        for name, value in self.evidence.items():
            shares[f"evidence:{name}"] = value * scale
        shares["pattern_diversity"] = self.diversity * scale
        return shares


def features(
    patterns: Mapping[str, Aggregate], severities: Mapping[Severity, Aggregate], tables: Tables
) -> Features:
    """The evidence features of aggregates valued at one time, and their saturated score.

    ``patterns`` must be sorted by key, as every state's are.
    """
    masses = {pattern: entry[0] for pattern, entry in patterns.items()}
    critical = severities.get(Severity.CRITICAL)
    distinct = len(masses)
    diversity = (
        min(tables.diversity_cap, tables.diversity_bonus * (distinct - 1)) if distinct > 1 else 0.0
    )
    return Features(
        masses,
        0.0 if critical is None else tables.amplification * critical[0],
        diversity,
        tables.saturation,
    )
