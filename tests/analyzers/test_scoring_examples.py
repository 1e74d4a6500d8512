"""Worked examples with hand-checked numbers (the same ones docs/analyzer.md walks through)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from scoring_strategies import BASE, make_evidence

from analyzers import (
    ANALYZER_VERSION,
    AnalyzerConfig,
    Assessment,
    EnrichmentSignal,
    EntityRiskState,
    EvidenceAlreadyAppliedError,
    RiskLevel,
    Severity,
    applied_modifier,
    assess,
    assess_many,
    conservative_assessment,
    decayed_score,
    resolve_level,
)

DAY = 86_400.0
INITIAL = EntityRiskState.initial()


def worked_example(config: AnalyzerConfig) -> tuple[tuple[Assessment, ...], EntityRiskState]:
    """The three pieces of evidence of the documented example, folded from scratch."""
    evidence = [
        make_evidence(0, pattern="failed_login_burst", severity=Severity.HIGH, source="idp"),
        make_evidence(
            DAY,
            pattern="impossible_travel",
            severity=Severity.MEDIUM,
            source="geo",
            lag_seconds=DAY / 2,
        ),
        make_evidence(
            DAY,
            pattern="malware_detected",
            severity=Severity.CRITICAL,
            confidence=0.95,
            source="edr",
        ),
    ]
    return assess_many(INITIAL, evidence, config=config)


def test_one_high_severity_event_scores_medium(config: AnalyzerConfig) -> None:
    """One high event: raw 0.6, score 1 - 2^-0.6 = 0.3402, level medium."""
    first = worked_example(config)[0][0]
    assert first.score == pytest.approx(0.340246, abs=1e-6)
    assert first.level is RiskLevel.MEDIUM
    assert first.previous_level is RiskLevel.LOW
    assert first.contributions == {
        "critical_amplification": 0.0,
        "evidence:failed_login_burst": pytest.approx(0.340246, abs=1e-6),
        "pattern_diversity": 0.0,
    }
    # volume 1/(1+3) = 0.25, one source of three, fresh, confidence reported
    assert first.confidence == pytest.approx(0.4 * 0.25 + 0.2 / 3 + 0.2 + 0.2)


def test_a_day_later_the_first_event_counts_half(config: AnalyzerConfig) -> None:
    """After one half-life the high event is worth 0.3; with a medium one and diversity, 0.4452."""
    second = worked_example(config)[0][1]
    # raw = 0.6 * 0.5 + 0.3 + 0.25 (two patterns) = 0.85
    assert second.score == pytest.approx(1 - 2**-0.85)
    assert second.score == pytest.approx(0.445215, abs=1e-6)
    assert second.level is RiskLevel.MEDIUM
    assert second.contributions["pattern_diversity"] == pytest.approx(second.score * 0.25 / 0.85)


def test_a_critical_event_amplifies_to_critical(config: AnalyzerConfig) -> None:
    """Raw 0.3 + 0.3 + 0.95 + 0.95 (amplification) + 0.5 (diversity) = 3.0: score 0.875."""
    assessments, state = worked_example(config)
    third = assessments[2]
    assert third.score == pytest.approx(0.875, abs=1e-12)
    assert third.level is RiskLevel.CRITICAL
    assert third.previous_level is RiskLevel.MEDIUM
    assert third.patterns == ("failed_login_burst", "impossible_travel", "malware_detected")
    assert third.contributions == pytest.approx(
        {
            "critical_amplification": 0.875 * 0.95 / 3,
            "evidence:failed_login_burst": 0.875 * 0.3 / 3,
            "evidence:impossible_travel": 0.875 * 0.3 / 3,
            "evidence:malware_detected": 0.875 * 0.95 / 3,
            "pattern_diversity": 0.875 * 0.5 / 3,
        }
    )
    assert third.recommendations[0] == config.recommendations.levels.critical[0]
    assert third.analyzer_version == ANALYZER_VERSION
    assert third.config_fingerprint == config.fingerprint()
    assert state.last_sequence == 0
    assert state.level is RiskLevel.CRITICAL


def test_confidence_reflects_volume_sources_recency_and_completeness(
    config: AnalyzerConfig,
) -> None:
    """2.5 decayed events, three sources, one recorded 12 h late: confidence 0.7584."""
    third = worked_example(config)[0][2]
    recency = (0.5 + 2**-0.5 + 1.0) / 2.5
    assert third.confidence_factors == pytest.approx(
        {"volume": 2.5 / 5.5, "sources": 1.0, "recency": recency, "completeness": 1.0}
    )
    assert recency == pytest.approx(0.882843, abs=1e-6)
    assert third.confidence == pytest.approx(0.758387, abs=1e-6)


def test_a_day_without_evidence_halves_every_feature(config: AnalyzerConfig) -> None:
    """One half-life later raw is 1.75 and the evidence score 1 - 2^-1.75 = 0.7027."""
    state = worked_example(config)[1]
    later = decayed_score(state, at=BASE + timedelta(days=2), config=config)
    assert later == pytest.approx(0.702698, abs=1e-6)
    assert decayed_score(state, at=BASE + timedelta(days=30), config=config) == 0.0


def test_positive_and_negative_enrichment(config: AnalyzerConfig) -> None:
    """+0.5 closes half the gap to 1 (0.9375); -0.5 halves the score (0.4375)."""
    history = worked_example(config)[1]
    evidence = make_evidence(DAY, pattern="malware_detected", severity=Severity.LOW, confidence=0)
    base, _ = assess(history, evidence, config=config)
    up, _ = assess(history, evidence, config=config, enrichment=signal(0.5))
    down, down_state = assess(history, evidence, config=config, enrichment=signal(-0.5))
    assert base.score == pytest.approx(0.875)
    assert up.score == pytest.approx(0.9375)
    assert up.contributions["enrichment"] == pytest.approx(0.0625)
    assert down.score == pytest.approx(0.4375)
    assert down.contributions["enrichment"] == pytest.approx(-0.4375)
    assert down.enrichment == signal(-0.5)
    assert down.level is RiskLevel.MEDIUM
    assert down_state.level is RiskLevel.MEDIUM


def test_a_modifier_beyond_the_bounds_is_held_at_them(config: AnalyzerConfig) -> None:
    """-1.0 would clear a critical entity; the default bound -0.5 halves its score at most."""
    history = worked_example(config)[1]
    evidence = make_evidence(DAY, pattern="malware_detected", severity=Severity.LOW, confidence=0)
    cleared, _ = assess(history, evidence, config=config, enrichment=signal(-1.0))
    halved, _ = assess(history, evidence, config=config, enrichment=signal(-0.5))
    assert cleared.score == halved.score == pytest.approx(0.4375)
    assert cleared.enrichment == signal(-1.0), "the answer is recorded as given"
    assert applied_modifier(signal(-1.0), config=config) == -0.5
    strict = config.model_copy(update={"enrichment_min_modifier": -0.2})
    assert assess(history, evidence, config=strict, enrichment=signal(-1.0))[0].score == (
        pytest.approx(0.875 * 0.8)
    )


def signal(modifier: float) -> EnrichmentSignal:
    """A reputation signal with ``modifier``."""
    return EnrichmentSignal(provider="reputation", modifier=modifier)


def test_hysteresis_holds_high_until_the_score_falls_below_threshold_minus_margin() -> None:
    """With high at 0.6 and margin 0.05: 0.57 stays high, 0.549 falls to medium, 0.6 rises."""
    thresholds, margin = (0.3, 0.6, 0.85), 0.05
    assert resolve_level(RiskLevel.MEDIUM, 0.6, thresholds, margin) is RiskLevel.HIGH
    assert resolve_level(RiskLevel.HIGH, 0.57, thresholds, margin) is RiskLevel.HIGH
    assert resolve_level(RiskLevel.HIGH, 0.549, thresholds, margin) is RiskLevel.MEDIUM
    assert resolve_level(RiskLevel.MEDIUM, 0.59, thresholds, margin) is RiskLevel.MEDIUM
    assert resolve_level(RiskLevel.CRITICAL, 0.58, thresholds, margin) is RiskLevel.HIGH
    assert resolve_level(RiskLevel.CRITICAL, 0.1, thresholds, margin) is RiskLevel.LOW


def test_a_degraded_assessment_holds_the_level_and_halves_confidence(
    config: AnalyzerConfig,
) -> None:
    """With the dependency down, a critical entity stays critical though its score has decayed."""
    state = worked_example(config)[1]
    weak = make_evidence(3 * DAY, pattern="odd_hours", severity=Severity.LOW, source="idp")
    normal, _ = assess(state, weak, config=config)
    degraded, degraded_state = conservative_assessment(state, weak, config=config)
    # 0.3/4 + 0.3/4 + 0.95/4 + 0.95/4 (amplification) + 0.1 + 0.75 (four patterns) = 1.475
    assert normal.score == pytest.approx(1 - 2**-1.475)
    assert normal.score == pytest.approx(0.640267, abs=1e-6)
    assert normal.level is RiskLevel.HIGH
    assert degraded.level is RiskLevel.CRITICAL
    assert degraded.degraded
    assert degraded.confidence == pytest.approx(normal.confidence * 0.5)
    assert degraded.recommendations[-1] == config.recommendations.degraded
    assert degraded_state.level is RiskLevel.CRITICAL


def test_evidence_older_than_the_state_is_decayed_into_it(config: AnalyzerConfig) -> None:
    """Late evidence counts as much as it would have, had it arrived in time order."""
    early = make_evidence(0, pattern="scan", severity=Severity.HIGH)
    late = make_evidence(DAY, pattern="odd_hours", severity=Severity.MEDIUM)
    in_order = assess_many(INITIAL, [early, late], config=config)[0][-1]
    reversed_order = assess_many(INITIAL, [late, early], config=config)[0][-1]
    assert reversed_order.score == pytest.approx(in_order.score, abs=1e-12)
    assert reversed_order.contributions == pytest.approx(in_order.contributions, abs=1e-12)


def test_evidence_already_applied_is_refused(config: AnalyzerConfig) -> None:
    """A stream sequence at or below the state's last one raises instead of counting twice."""
    _, state = assess(INITIAL, make_evidence(0, sequence=7), config=config)
    assert state.last_sequence == 7
    with pytest.raises(EvidenceAlreadyAppliedError) as caught:
        assess(state, make_evidence(1, sequence=7), config=config)
    assert (caught.value.sequence, caught.value.last_sequence) == (7, 7)


def test_patterns_beyond_the_limit_drop_the_smallest(config: AnalyzerConfig) -> None:
    """With max_patterns 2 the smallest pattern is forgotten and the score is explained."""
    small = config.model_copy(update={"max_patterns": 2})
    evidence = [
        make_evidence(0, pattern="scan", severity=Severity.LOW),
        make_evidence(0, pattern="odd_hours", severity=Severity.HIGH),
        make_evidence(0, pattern="impossible_travel", severity=Severity.MEDIUM),
    ]
    assessment, state = assess_many(INITIAL, evidence, config=small)
    assert assessment[-1].patterns == ("impossible_travel", "odd_hours")
    assert set(state.pattern_mass) == set(state.pattern_seen) == {"impossible_travel", "odd_hours"}


def test_evidence_outside_the_window_is_forgotten(config: AnalyzerConfig) -> None:
    """Patterns and sources not seen for longer than the window no longer count."""
    old = make_evidence(0, pattern="scan", source="proxy")
    new = make_evidence(8 * DAY, pattern="odd_hours", source="idp")
    assessment, state = assess_many(INITIAL, [old, new], config=config)
    assert assessment[-1].patterns == ("odd_hours",)
    assert set(state.sources) == {"idp"}
    assert assessment[-1].contributions["pattern_diversity"] == 0.0


def test_a_pattern_weight_multiplies_that_patterns_evidence_mass() -> None:
    """Weight 2 doubles a pattern's mass, 0 silences it, an unlisted pattern weighs 1."""
    config = AnalyzerConfig(pattern_weights={"odd_hours": 2.0, "scan": 0.0})
    state = EntityRiskState.initial()
    found = {}
    for index, pattern in enumerate(("odd_hours", "scan", "malware_detected"), start=1):
        evidence = make_evidence(pattern=pattern, severity=Severity.HIGH, sequence=index)
        assessment, state = assess(state, evidence, config=config)
        found = assessment.contributions
    assert state.pattern_mass == {"malware_detected": 0.6, "odd_hours": 1.2, "scan": 0.0}
    raw = 0.6 + 1.2 + 0.0 + 0.5  # and two extra patterns' diversity
    assert found["evidence:odd_hours"] == pytest.approx(assessment.score * 1.2 / raw)
    assert found["evidence:scan"] == 0.0
    assert sum(found.values()) == pytest.approx(assessment.score, abs=1e-12)
