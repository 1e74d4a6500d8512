"""A seeded synthetic world with known true weights: evidence, and outcomes drawn from them.

Each entity has a latent risk in ``[0, 1]`` that decides how often it emits the
riskier patterns and the higher severities. Each evidence event draws one
outcome from the true logistic model on the entity's folded features at that
moment (unit pattern weights, the default config's decay, severities and
diversity), positive with probability
``sigmoid(b + sum_p w_p m_p + c critical + d diversity)``, observed within the
horizon after it; a share of the others get a benign (negative) outcome. An
entity's evidence is spaced more than one horizon apart, so every label is
exactly one draw. Everything is vectorised with numpy, and events are made
lazily: a million evidence events take seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from analyzers import EVIDENCE_RECORDED, AnalyzerConfig
from eventstore import CloudEvent
from projections.learning._events import OUTCOME_RECORDED

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from numpy.typing import NDArray

__all__ = ["DEFAULT_TRUE_WEIGHTS", "World", "make_world"]

DEFAULT_TRUE_WEIGHTS: dict[str, float] = {
    "data_exfiltration": 3.0,
    "failed_login_burst": 0.5,
    "impossible_travel": 1.5,
    "malware_detected": 2.5,
    "new_device": 0.2,
    "privilege_escalation": 2.0,
}
"""True logit weights per unit of pattern mass: what ``learn`` should find, up to scale."""
_SEVERITIES = ("low", "medium", "high", "critical")
_SOURCE = "urn:riskpipe:world"
_SPACING_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class World:
    """The generated evidence (in stream order) and outcomes, and the truth behind them."""

    seed: int
    tenant: str
    start: datetime
    span_seconds: float
    horizon_seconds: float
    patterns: tuple[str, ...]
    true_weights: dict[str, float]
    true_severity: dict[str, float]
    """Each severity's true weight (default: the default config's)."""
    true_critical: float
    true_diversity: float
    intercept: float
    entity: NDArray[np.int64]
    time: NDArray[np.float64]
    """Seconds since :attr:`start`."""
    pattern: NDArray[np.int64]
    severity: NDArray[np.int64]
    confidence: NDArray[np.float64]
    probability: NDArray[np.float64]
    outcome_entity: NDArray[np.int64]
    outcome_time: NDArray[np.float64]
    outcome_positive: NDArray[np.bool_]
    names: tuple[str, ...] = field(repr=False)

    @property
    def until(self) -> datetime:
        """The end of the world's time span."""
        return self.start + timedelta(seconds=self.span_seconds)

    def at(self, seconds: float) -> datetime:
        """The time ``seconds`` after the start."""
        return self.start + timedelta(seconds=seconds)

    def evidence_events(self) -> Iterator[CloudEvent]:
        """Every evidence event, in time order (made one at a time)."""
        start = self.start
        for i in range(len(self.time)):
            yield CloudEvent(
                id=f"w{self.seed}-e{i}",
                source=_SOURCE,
                type=EVIDENCE_RECORDED,
                subject=self.names[int(self.entity[i])],
                tenant=self.tenant,
                time=start + timedelta(seconds=float(self.time[i])),
                data={
                    "pattern": self.patterns[int(self.pattern[i])],
                    "severity": _SEVERITIES[int(self.severity[i])],
                    "confidence": float(self.confidence[i]),
                },
            )

    def outcome_events(self) -> Iterator[CloudEvent]:
        """Every outcome event, in time order (made one at a time)."""
        start = self.start
        for i in range(len(self.outcome_time)):
            positive = bool(self.outcome_positive[i])
            yield CloudEvent(
                id=f"w{self.seed}-o{i}",
                source=_SOURCE,
                type=OUTCOME_RECORDED,
                subject=self.names[int(self.outcome_entity[i])],
                tenant=self.tenant,
                time=start + timedelta(seconds=float(self.outcome_time[i])),
                data={"outcome": "fraud_confirmed" if positive else "benign", "positive": positive},
            )


def _true_features(  # noqa: PLR0913, PLR0917 - the evidence arrays and the config folding them
    entity: NDArray[np.int64],
    time: NDArray[np.float64],
    pattern: NDArray[np.int64],
    severity: NDArray[np.int64],
    confidence: NDArray[np.float64],
    weights: NDArray[np.float64],
    config: AnalyzerConfig,
    true_severity: Mapping[str, float] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per event (sorted by entity, then time): sum w_p m_p, critical mass, diversity term.

    Contributions older than the window are left out (the analyzer keeps a
    pattern's older mass while the pattern is seen within the window: a
    difference below 0.5 ** (window / half-life) of those masses).
    """
    severity_weight = np.array([getattr(config.severity_weights, s) for s in _SEVERITIES])
    if true_severity is not None:
        severity_weight = np.array([true_severity[s] for s in _SEVERITIES], dtype=np.float64)
    mass = severity_weight[severity] * confidence
    weighted = weights[pattern] * mass
    critical_conf = np.where(severity == len(_SEVERITIES) - 1, confidence, 0.0)
    linear = weighted.copy()
    critical = critical_conf.copy()
    seen = np.left_shift(np.int64(1), pattern)
    n = len(time)
    lag = 1
    while lag < n:
        same = (entity[lag:] == entity[:-lag]) & (time[lag:] - time[:-lag] <= config.window_seconds)
        if not same.any():
            break
        idx = np.flatnonzero(same) + lag
        factor = np.power(0.5, (time[idx] - time[idx - lag]) / config.half_life_seconds)
        linear[idx] += weighted[idx - lag] * factor
        critical[idx] += critical_conf[idx - lag] * factor
        seen[idx] |= np.left_shift(np.int64(1), pattern[idx - lag])
        lag += 1
    distinct = np.bitwise_count(seen)
    diversity = np.where(
        distinct > 1,
        np.minimum(config.diversity_cap, config.diversity_bonus * (distinct - 1)),
        0.0,
    )
    return linear, critical, diversity


def _intercept(score: NDArray[np.float64], rate: float) -> float:
    """The ``b`` that makes the mean of ``sigmoid(b + score)`` equal ``rate`` (bisection)."""
    low, high = -60.0, 60.0
    for _ in range(100):
        middle = (low + high) / 2.0
        mean = float(np.mean(1.0 / (1.0 + np.exp(-(middle + score)))))
        low, high = (middle, high) if mean < rate else (low, middle)
    return (low + high) / 2.0


def make_world(  # noqa: PLR0913 - every knob of the world, keyword-only and defaulted
    *,
    seed: int = 0,
    entities: int = 500,
    events: int = 5000,
    span_seconds: float = 60 * 86_400.0,
    horizon_seconds: float = 12 * 3_600.0,
    true_weights: Mapping[str, float] | None = None,
    true_severity: Mapping[str, float] | None = None,
    true_critical: float = 0.5,
    true_diversity: float = 0.0,
    positive_rate: float = 0.2,
    benign_share: float = 0.3,
    start: datetime | None = None,
    tenant: str = "acme",
) -> World:
    """A seeded world: ``events`` evidence of ``entities`` entities over ``span_seconds``.

    Raises:
        ValueError: an entity would get evidence closer together than the horizon.
    """
    rng = np.random.default_rng(seed)
    truth = dict(sorted((true_weights or DEFAULT_TRUE_WEIGHTS).items()))
    patterns = tuple(truth)
    weights = np.array([truth[p] for p in patterns], dtype=np.float64)
    risk = rng.beta(1.2, 3.0, size=entities)
    counts = rng.multinomial(events, (0.5 + risk) / np.sum(0.5 + risk))
    step = span_seconds / np.maximum(counts, 1)
    if float(step.min()) * (1.0 - 2 * _SPACING_JITTER) <= horizon_seconds:
        raise ValueError(
            f"the busiest entity has {int(counts.max())} evidence in {span_seconds:g} s:"
            " more than fit one per horizon; give more entities, a longer span or a shorter"
            " horizon"
        )
    entity = np.repeat(np.arange(entities, dtype=np.int64), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    index = np.arange(events) - first
    jitter = rng.uniform(-_SPACING_JITTER, _SPACING_JITTER, size=events)
    time = (index + 0.5 + jitter) * step[entity]
    r = risk[entity]
    risky = rng.choice(len(patterns), size=events, p=weights / weights.sum())
    plain = rng.integers(0, len(patterns), size=events)
    pattern = np.where(rng.uniform(size=events) < r, risky, plain).astype(np.int64)
    u = rng.uniform(size=events)
    severity = np.select(
        [u < 0.05 + 0.25 * r, u < 0.25 + 0.35 * r, u < 0.65 + 0.2 * r],
        [3, 2, 1],
        default=0,
    ).astype(np.int64)
    confidence = np.round(rng.uniform(0.5, 1.0, size=events), 3)
    config = AnalyzerConfig()
    severities = (
        dict(true_severity)
        if true_severity is not None
        else {s: float(getattr(config.severity_weights, s)) for s in _SEVERITIES}
    )
    linear, critical, diversity = _true_features(
        entity, time, pattern, severity, confidence, weights, config, severities
    )
    score = linear + true_critical * critical + true_diversity * diversity
    intercept = _intercept(score, positive_rate)
    probability = 1.0 / (1.0 + np.exp(-(intercept + score)))
    positive = rng.uniform(size=events) < probability
    benign = ~positive & (rng.uniform(size=events) < benign_share)
    drawn = positive | benign
    delay = rng.uniform(0.05, 0.95, size=events) * horizon_seconds
    outcome_time = (time + delay)[drawn]
    outcome_order = np.argsort(outcome_time, kind="mergesort")
    order = np.argsort(time, kind="mergesort")
    width = max(6, math.ceil(math.log10(max(entities, 2))))
    return World(
        seed=seed,
        tenant=tenant,
        start=start or datetime(2026, 1, 1, tzinfo=UTC),
        span_seconds=span_seconds,
        horizon_seconds=horizon_seconds,
        patterns=patterns,
        true_weights=truth,
        true_severity=severities,
        true_critical=true_critical,
        true_diversity=true_diversity,
        intercept=intercept,
        entity=entity[order],
        time=time[order],
        pattern=pattern[order],
        severity=severity[order],
        confidence=confidence[order],
        probability=probability[order],
        outcome_entity=entity[drawn][outcome_order],
        outcome_time=outcome_time[outcome_order],
        outcome_positive=positive[drawn][outcome_order],
        names=tuple(f"ent{i:0{width}d}" for i in range(entities)),
    )
