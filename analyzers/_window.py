"""Time-decayed aggregates: folding evidence into them and reading them later.

Every sum decays exponentially with the configured half-life: a contribution
``x`` observed at ``t`` is worth ``x * 0.5 ** ((now - t) / half_life)`` at
``now``. Sums are kept valued at the state's ``as_of`` (the newest evidence
time), so moving them forward is one multiplication each, and evidence
arriving out of order is folded exactly as if it had arrived in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, TypeVar

from analyzers._evidence import Severity

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from analyzers._config import Tables
    from analyzers._evidence import Evidence
    from analyzers._levels import RiskLevel
    from analyzers._state import EntityRiskState

__all__ = ["Features", "StateFields", "advance", "advance_impact", "decay", "features", "fold"]

K = TypeVar("K", str, Severity)


def decay(seconds: float, half_life: float) -> float:
    """The factor a sum keeps after ``seconds``: it halves every ``half_life`` seconds."""
    return 0.5 ** (seconds / half_life) if seconds > 0.0 else 1.0


class StateFields(TypedDict):
    """The fields of the next :class:`EntityRiskState`, as :func:`fold` computes them."""

    level: RiskLevel
    as_of: datetime
    last_sequence: int
    evidence_count: float
    reported_count: float
    freshness: float
    pattern_mass: dict[str, float]
    pattern_seen: dict[str, datetime]
    severity_mass: dict[Severity, float]
    severity_seen: dict[Severity, datetime]
    sources: dict[str, datetime]
    impact_mass: float | None
    impact_seen: datetime | None


def fold(state: EntityRiskState, evidence: Evidence, tables: Tables) -> StateFields:
    """The fields of ``state`` with ``evidence`` added, valued at the new ``as_of``.

    The level is left as it was: deciding it is the caller's business.
    """
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
    pattern_mass, pattern_seen = advance(state.pattern_mass, state.pattern_seen, kept, cutoff)
    severity_mass, severity_seen = advance(state.severity_mass, state.severity_seen, kept, cutoff)
    impact_mass, impact_seen = advance_impact(state, kept, cutoff)
    if observed >= cutoff:
        mass = tables.severity_weights[evidence.severity] * evidence.confidence * weight
        if tables.pattern_weights:
            mass *= tables.pattern_weights.get(evidence.pattern, 1.0)
        _add(pattern_mass, pattern_seen, evidence.pattern, mass, observed)
        if evidence.impact is not None and tables.impact_amplification > 0.0:
            extra = tables.impact_amplification * evidence.impact * mass
            impact_mass = extra if impact_mass is None else impact_mass + extra
            impact_seen = observed if impact_seen is None else max(impact_seen, observed)
        _add(
            severity_mass, severity_seen, evidence.severity, evidence.confidence * weight, observed
        )
        _evict(pattern_mass, pattern_seen, tables.max_patterns)
    return {
        "level": state.level,
        "as_of": as_of,
        "last_sequence": max(state.last_sequence, evidence.sequence),
        "evidence_count": state.evidence_count * kept + weight,
        "reported_count": state.reported_count * kept
        + (weight if evidence.confidence_reported else 0.0),
        "freshness": state.freshness * kept + weight * decay(evidence.lag_seconds, half_life),
        "pattern_mass": pattern_mass,
        "pattern_seen": pattern_seen,
        "severity_mass": severity_mass,
        "severity_seen": severity_seen,
        "sources": _seen(state.sources, evidence.source, observed, cutoff, tables.full_sources),
        "impact_mass": impact_mass,
        "impact_seen": impact_seen,
    }


def advance_impact(
    state: EntityRiskState, kept: float, cutoff: datetime
) -> tuple[float | None, datetime | None]:
    """The state's impact mass times ``kept`` and when it was last added to; none before ``cutoff``.

    ``None`` when no evidence with an ``impact`` is in the window: the state
    then has no impact fields at all, as before v2 evidence existed.
    """
    if state.impact_mass is None or state.impact_seen is None or state.impact_seen < cutoff:
        return None, None
    return (state.impact_mass * kept if kept != 1.0 else state.impact_mass), state.impact_seen


def advance(
    masses: Mapping[K, float], seen: Mapping[K, datetime], kept: float, cutoff: datetime
) -> tuple[dict[K, float], dict[K, datetime]]:
    """Copies of ``masses`` times ``kept`` and of ``seen``, minus entries seen before ``cutoff``."""
    if seen and min(seen.values()) < cutoff:
        recent = {key: last for key, last in seen.items() if last >= cutoff}
        return {key: masses[key] * kept for key in recent}, recent
    if kept == 1.0:
        return dict(masses), dict(seen)
    return {key: value * kept for key, value in masses.items()}, dict(seen)


def _add(
    masses: dict[K, float], seen: dict[K, datetime], key: K, amount: float, at: datetime
) -> None:
    """Add ``amount`` under ``key``, keeping both maps sorted by key."""
    last = seen.get(key)
    if last is not None:
        masses[key] += amount
        if at > last:
            seen[key] = at
        return
    in_order = not masses or key > next(reversed(masses))
    masses[key] = amount
    seen[key] = at
    if not in_order:
        _sort(masses)
        _sort(seen)


def _sort(mapping: dict[K, float] | dict[K, datetime]) -> None:
    items = sorted(mapping.items())
    mapping.clear()
    mapping.update(items)  # type: ignore[arg-type] # items came from this very mapping


def _evict(masses: dict[str, float], seen: dict[str, datetime], limit: int) -> None:
    """Drop the smallest patterns beyond ``limit``; that never lowers the total mass."""
    while len(masses) > limit:
        smallest = min(masses, key=lambda pattern: (masses[pattern], pattern))
        del masses[smallest]
        del seen[smallest]


def _seen(
    sources: Mapping[str, datetime], source: str, at: datetime, cutoff: datetime, keep: int
) -> dict[str, datetime]:
    """Sources seen in the window; only the ``keep`` most recent matter for diversity."""
    if sources and min(sources.values()) < cutoff:
        seen = {name: last for name, last in sources.items() if last >= cutoff}
    else:
        seen = dict(sources)
    last = seen.get(source)
    if at < cutoff or (last is not None and last >= at):
        return seen
    seen[source] = at
    while len(seen) > keep:
        del seen[min(seen, key=seen.__getitem__)]
    return seen


class Features:
    """The raw (unsaturated) feature values of the evidence score, and that score.

    ``masses`` are the severity- and confidence-weighted masses per pattern,
    sorted by pattern. ``impact`` is the impact amplification, ``None`` when no
    evidence in the window reported an impact (then it is no feature at all).
    """

    __slots__ = ("critical", "diversity", "impact", "masses", "raw", "score")

    def __init__(
        self,
        masses: Mapping[str, float],
        critical: float,
        diversity: float,
        saturation: float,
        impact: float | None = None,
    ) -> None:
        self.masses = masses
        self.critical = critical
        self.diversity = diversity
        self.impact = impact
        self.raw = sum(masses.values()) + critical + diversity
        if impact is not None:
            self.raw += impact
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
        for name, mass in self.masses.items():
            shares[f"evidence:{name}"] = mass * scale
        if self.impact is not None:
            shares["impact_amplification"] = self.impact * scale
        shares["pattern_diversity"] = self.diversity * scale
        return shares


def features(
    pattern_mass: Mapping[str, float],
    severity_mass: Mapping[Severity, float],
    tables: Tables,
    impact_mass: float | None = None,
) -> Features:
    """The evidence features of masses valued at one time, and their saturated score.

    ``pattern_mass`` must be sorted by key, as every state's is.
    """
    distinct = len(pattern_mass)
    diversity = (
        min(tables.diversity_cap, tables.diversity_bonus * (distinct - 1)) if distinct > 1 else 0.0
    )
    critical = tables.amplification * severity_mass.get(Severity.CRITICAL, 0.0)
    return Features(pattern_mass, critical, diversity, tables.saturation, impact_mass)
