"""People's decisions as the analyzer applies them: named contributions that still sum up."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scoring_strategies import PATTERNS, evidence_lists, make_evidence

from analyzers import (
    AnalyzerConfig,
    EntityRiskState,
    ReviewSignal,
    RiskLevel,
    Severity,
    assess,
    assess_many,
    conservative_assessment,
)

CONFIG = AnalyzerConfig()
INITIAL = EntityRiskState.initial()


def _sums(contributions: dict[str, float], score: float) -> bool:
    return math.isclose(sum(contributions.values()), score, abs_tol=1e-9)


def test_a_confirmed_decision_lifts_a_low_score_to_the_decided_level() -> None:
    """Below the floor's threshold, ``review:confirmed`` makes up the difference."""
    evidence = make_evidence(pattern="odd_hours", severity=Severity.LOW)
    plain, _ = assess(INITIAL, evidence, config=CONFIG)
    floor = ReviewSignal(floor=RiskLevel.HIGH, decisions=(12,))
    lifted, state = assess(INITIAL, evidence, config=CONFIG, review=floor)
    assert plain.level == RiskLevel.LOW
    assert lifted.level == RiskLevel.HIGH
    assert state.level == RiskLevel.HIGH
    assert lifted.score == pytest.approx(CONFIG.thresholds.high)
    assert lifted.contributions["review:confirmed"] == pytest.approx(
        CONFIG.thresholds.high - plain.score
    )
    assert _sums(lifted.contributions, lifted.score)
    assert lifted.review == floor


def test_a_floor_below_the_score_changes_nothing_but_the_record() -> None:
    """Already above the decided level: no ``review:confirmed`` share, the signal is kept."""
    evidence = make_evidence(pattern="malware_detected", severity=Severity.CRITICAL)
    plain, _ = assess(INITIAL, evidence, config=CONFIG)
    floored, _ = assess(INITIAL, evidence, config=CONFIG, review=ReviewSignal(floor=RiskLevel.LOW))
    assert floored.score == plain.score
    assert "review:confirmed" not in floored.contributions
    assert floored.review is not None


def test_a_false_positive_dampens_the_patterns_that_raised_the_case() -> None:
    """The dampened pattern keeps its share; ``review:false_positive`` takes the part removed."""
    evidence = make_evidence(pattern="failed_login_burst", severity=Severity.HIGH)
    plain, _ = assess(INITIAL, evidence, config=CONFIG)
    signal = ReviewSignal(dampened=("failed_login_burst",), factor=0.25, decisions=(3,))
    dampened, _ = assess(INITIAL, evidence, config=CONFIG, review=signal)
    share = plain.contributions["evidence:failed_login_burst"]
    assert dampened.contributions["evidence:failed_login_burst"] == share
    assert dampened.contributions["review:false_positive"] == pytest.approx(-0.75 * share)
    assert dampened.score == pytest.approx(plain.score - 0.75 * share)
    assert _sums(dampened.contributions, dampened.score)
    other = ReviewSignal(dampened=("scan",), factor=0.0)
    untouched, _ = assess(INITIAL, evidence, config=CONFIG, review=other)
    assert untouched.score == plain.score
    assert "review:false_positive" not in untouched.contributions


def test_no_decisions_leave_the_assessment_as_it_was() -> None:
    """``review=None`` writes no ``review`` key: earlier assessments keep their bytes."""
    evidence = make_evidence()
    assessment, _ = assess(INITIAL, evidence, config=CONFIG)
    assert assessment.review is None
    assert '"review"' not in assessment.model_dump_json(exclude_none=True)


def test_a_degraded_assessment_applies_the_decisions_too() -> None:
    """While enrichment is down the decisions still hold."""
    evidence = make_evidence(pattern="odd_hours", severity=Severity.LOW)
    degraded, _ = conservative_assessment(
        INITIAL, evidence, config=CONFIG, review=ReviewSignal(floor=RiskLevel.CRITICAL)
    )
    assert degraded.degraded
    assert degraded.level == RiskLevel.CRITICAL
    assert _sums(degraded.contributions, degraded.score)


@given(
    evidence=evidence_lists(),
    floor=st.sampled_from([None, *RiskLevel]),
    dampened=st.lists(st.sampled_from(PATTERNS), unique=True, max_size=3),
    factor=st.floats(min_value=0.0, max_value=1.0),
)
def test_with_any_decisions_the_shares_sum_to_a_score_in_range(
    evidence: list, floor: RiskLevel | None, dampened: list[str], factor: float
) -> None:
    """Whatever the decisions, contributions sum to the score, and the floor holds."""
    signal = ReviewSignal(floor=floor, dampened=tuple(dampened), factor=factor)
    state = INITIAL
    for item in evidence:
        assessment, state = assess(state, item, config=CONFIG, review=signal)
        assert 0.0 <= assessment.score <= 1.0
        assert _sums(assessment.contributions, assessment.score)
        if floor is not None:
            assert list(RiskLevel).index(assessment.level) >= list(RiskLevel).index(floor)
    assert len(assess_many(INITIAL, evidence, config=CONFIG)[0]) == len(evidence)
