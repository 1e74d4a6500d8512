"""Hypothesis strategies for evidence streams, configs and enrichment signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from analyzers import (
    AnalyzerConfig,
    ConfidenceWeights,
    EnrichmentSignal,
    Evidence,
    LevelThresholds,
    Severity,
    SeverityWeights,
)

__all__ = [
    "BASE",
    "PATTERNS",
    "SOURCES",
    "configs",
    "enrichments",
    "evidence_lists",
    "make_evidence",
]

BASE = datetime(2024, 5, 1, tzinfo=UTC)
PATTERNS = ("failed_login_burst", "impossible_travel", "malware_detected", "odd_hours", "scan")
SOURCES = ("idp", "edr", "geo", "proxy")
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def make_evidence(  # noqa: PLR0913 - a test builder with a default for every field
    offset_seconds: float = 0.0,
    *,
    pattern: str = "failed_login_burst",
    severity: Severity = Severity.HIGH,
    confidence: float = 1.0,
    source: str = "idp",
    sequence: int = 0,
    lag_seconds: float = 0.0,
    reported: bool = True,
) -> Evidence:
    """Evidence observed ``offset_seconds`` after :data:`BASE`."""
    observed = BASE + timedelta(seconds=offset_seconds)
    return Evidence(
        event_id=f"ev-{sequence}-{pattern}-{offset_seconds}",
        source=source,
        sequence=sequence,
        pattern=pattern,
        severity=severity,
        confidence=confidence,
        observed_at=observed,
        recorded_at=observed + timedelta(seconds=lag_seconds),
        confidence_reported=reported,
    )


@st.composite
def evidence_lists(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 12, in_order: bool = False
) -> list[Evidence]:
    """Evidence streams, sequenced or offline, in or (unless ``in_order``) out of time order."""
    size = draw(st.integers(min_size, max_size))
    if in_order:
        steps = draw(st.lists(st.integers(0, 3 * 86_400), min_size=size, max_size=size))
        offsets = [sum(steps[: index + 1]) for index in range(size)]
    else:
        offsets = draw(st.lists(st.integers(0, 10 * 86_400), min_size=size, max_size=size))
    sequenced = draw(st.booleans())
    return [
        make_evidence(
            offset,
            pattern=draw(st.sampled_from(PATTERNS)),
            severity=draw(st.sampled_from(list(Severity))),
            confidence=draw(unit),
            source=draw(st.sampled_from(SOURCES)),
            sequence=index + 1 if sequenced else 0,
            lag_seconds=draw(st.sampled_from([0.0, 3_600.0, 86_400.0])),
            reported=draw(st.booleans()),
        )
        for index, offset in enumerate(offsets)
    ]


@st.composite
def configs(draw: st.DrawFn) -> AnalyzerConfig:
    """Valid configs across the whole tunable space."""
    weights = sorted(draw(st.lists(st.floats(0.0, 3.0), min_size=4, max_size=4)))
    medium, high, critical = sorted(
        draw(st.lists(st.floats(0.05, 0.99), min_size=3, max_size=3, unique=True))
    )
    narrowest = min(medium, high - medium, critical - high)
    half_life = draw(st.floats(60.0, 30 * 86_400.0))
    return AnalyzerConfig(
        half_life_seconds=half_life,
        window_seconds=half_life * draw(st.floats(1.0, 10.0)),
        severity_weights=SeverityWeights(
            low=weights[0], medium=weights[1], high=weights[2], critical=weights[3]
        ),
        critical_amplification=draw(st.floats(0.0, 3.0)),
        diversity_bonus=draw(st.floats(0.0, 1.0)),
        diversity_cap=draw(st.floats(0.0, 2.0)),
        saturation=draw(st.floats(0.1, 5.0)),
        thresholds=LevelThresholds(medium=medium, high=high, critical=critical),
        hysteresis_margin=draw(st.floats(0.0, 0.99)) * narrowest,
        volume_half=draw(st.floats(0.5, 10.0)),
        full_sources=draw(st.integers(1, 5)),
        confidence_weights=ConfidenceWeights(
            volume=draw(st.floats(0.01, 1.0)),
            sources=draw(st.floats(0.0, 1.0)),
            recency=draw(st.floats(0.0, 1.0)),
            completeness=draw(st.floats(0.0, 1.0)),
        ),
        max_patterns=draw(st.integers(1, 6)),
        enrichment_weight=draw(st.floats(0.0, 3.0)),
        enrichment_min_modifier=draw(st.floats(-1.0, 0.0)),
        enrichment_max_modifier=draw(st.floats(0.0, 1.0)),
        pattern_weights=draw(st.dictionaries(st.sampled_from(PATTERNS), st.floats(0.0, 5.0))),
    )


enrichments = st.none() | st.builds(
    EnrichmentSignal,
    provider=st.just("reputation"),
    modifier=st.floats(-1.0, 1.0, allow_nan=False),
)
