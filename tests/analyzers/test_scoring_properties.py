"""Properties every assessment and state must have, whatever the evidence and config."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import assume, given
from hypothesis import strategies as st
from scoring_strategies import (
    BASE,
    configs,
    enrichments,
    evidence_lists,
    make_evidence,
)

from analyzers import (
    AnalyzerConfig,
    Assessment,
    EnrichmentSignal,
    EntityRiskState,
    Evidence,
    RiskLevel,
    Severity,
    applied_modifier,
    assess,
    assess_many,
    conservative_assessment,
    decayed_score,
    resolve_level,
)

INITIAL = EntityRiskState.initial()
SEVERITIES = list(Severity)
LEVELS = list(RiskLevel)


def fold(
    evidence: list[Evidence],
    config: AnalyzerConfig,
    signal: EnrichmentSignal | None = None,
    state: EntityRiskState = INITIAL,
) -> tuple[list[Assessment], EntityRiskState]:
    """Apply ``evidence`` one by one with :func:`assess`."""
    out = []
    for item in evidence:
        assessment, state = assess(state, item, config=config, enrichment=signal)
        out.append(assessment)
    return out, state


@given(evidence_lists(), configs(), enrichments)
def test_score_and_confidence_stay_in_the_unit_interval(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """Score, confidence and every confidence factor stay within [0, 1]."""
    for assessment in fold(evidence, config, signal)[0]:
        assert 0.0 <= assessment.score <= 1.0
        assert 0.0 <= assessment.confidence <= 1.0
        assert all(0.0 <= value <= 1.0 for value in assessment.confidence_factors.values())


@given(evidence_lists(), configs(), enrichments)
def test_same_inputs_give_identical_bytes(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """Scoring the same evidence twice, with an equal config, gives byte-identical output."""
    twin = AnalyzerConfig.model_validate_json(config.model_dump_json())
    first, first_state = fold(evidence, config, signal)
    second, second_state = fold(evidence, twin, signal)
    assert [a.canonical_json() for a in first] == [a.canonical_json() for a in second]
    assert first_state.model_dump_json() == second_state.model_dump_json()


@given(evidence_lists(), configs(), enrichments)
def test_contributions_sum_to_the_score(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """The feature contributions of every assessment add up to its score within 1e-9."""
    for assessment in fold(evidence, config, signal)[0]:
        assert abs(sum(assessment.contributions.values()) - assessment.score) <= 1e-9


@given(
    evidence_lists(max_size=8),
    configs(),
    enrichments,
    st.sampled_from(SEVERITIES),
    st.sampled_from(SEVERITIES),
    st.floats(0.0, 1.0),
)
def test_a_higher_severity_at_the_same_time_never_lowers_the_score(  # noqa: PLR0913, PLR0917 - hypothesis passes one argument per drawn value
    evidence: list[Evidence],
    config: AnalyzerConfig,
    signal: EnrichmentSignal | None,
    first: Severity,
    second: Severity,
    confidence: float,
) -> None:
    """Replacing the new evidence's severity by a higher one never gives a lower score."""
    low, high = sorted((first, second), key=SEVERITIES.index)
    state = fold(evidence, config)[1]
    new = make_evidence(
        (state.as_of - BASE).total_seconds() if state.as_of else 0.0,
        severity=low,
        confidence=confidence,
    )
    weaker, _ = assess(state, new, config=config, enrichment=signal)
    stronger_evidence = dataclasses.replace(new, severity=high)
    stronger, _ = assess(state, stronger_evidence, config=config, enrichment=signal)
    assert stronger.score >= weaker.score


@given(evidence_lists(max_size=8), evidence_lists(max_size=4), configs(), enrichments)
def test_more_evidence_at_the_same_time_never_lowers_the_score(
    evidence: list[Evidence],
    extra: list[Evidence],
    config: AnalyzerConfig,
    signal: EnrichmentSignal | None,
) -> None:
    """Evidence added at the state's own time only ever raises or keeps the score."""
    assessments, state = fold(evidence, config, signal)
    assert state.as_of is not None
    score = assessments[-1].score
    for item in extra:
        simultaneous = dataclasses.replace(item, observed_at=state.as_of, sequence=0)
        assessment, state = assess(state, simultaneous, config=config, enrichment=signal)
        assert assessment.score >= score
        score = assessment.score


@given(
    evidence_lists(),
    configs(),
    st.integers(0, 30 * 86_400),
    st.integers(0, 30 * 86_400),
)
def test_without_new_evidence_the_decayed_score_never_rises(
    evidence: list[Evidence], config: AnalyzerConfig, first: int, second: int
) -> None:
    """As time passes with no new evidence the evidence score falls or stays."""
    assessments, state = fold(evidence, config)
    assert state.as_of is not None
    earlier, later = sorted((first, second))
    at_earlier = decayed_score(state, at=state.as_of + timedelta(seconds=earlier), config=config)
    at_later = decayed_score(state, at=state.as_of + timedelta(seconds=later), config=config)
    assert at_later <= at_earlier <= assessments[-1].score


@given(evidence_lists(), configs())
def test_the_decayed_score_at_the_state_time_is_the_last_score(
    evidence: list[Evidence], config: AnalyzerConfig
) -> None:
    """Reading the state at its own time gives the score of the last (unenriched) assessment."""
    assessments, state = fold(evidence, config)
    assert state.as_of is not None
    assert decayed_score(state, at=state.as_of, config=config) == assessments[-1].score


@given(configs(), st.data())
def test_a_score_oscillating_inside_the_margin_never_changes_level(
    config: AnalyzerConfig, data: st.DataObject
) -> None:
    """Scores between a threshold minus the margin and the threshold keep the current level."""
    thresholds = config.thresholds.ascending()
    boundary = data.draw(st.sampled_from([1, 2, 3]))
    threshold = thresholds[boundary - 1]
    below = threshold - config.hysteresis_margin
    assume(below < threshold)
    scores = data.draw(
        st.lists(st.floats(below, threshold, exclude_max=True), min_size=1, max_size=30)
    )
    for start in (LEVELS[boundary - 1], LEVELS[boundary]):
        level = start
        for score in scores:
            level = resolve_level(level, score, thresholds, config.hysteresis_margin)
            assert level == start


@given(configs(), st.sampled_from(LEVELS), st.floats(0.0, 1.0))
def test_a_level_is_entered_at_its_threshold_and_left_below_it_minus_the_margin(
    config: AnalyzerConfig, previous: RiskLevel, score: float
) -> None:
    """Rising follows the thresholds; falling happens only past threshold minus margin."""
    thresholds = config.thresholds.ascending()
    level = resolve_level(previous, score, thresholds, config.hysteresis_margin)
    plain = LEVELS[sum(score >= threshold for threshold in thresholds)]
    lowered = LEVELS[sum(score >= t - config.hysteresis_margin for t in thresholds)]
    rank = LEVELS.index
    if rank(plain) > rank(previous):
        assert level == plain
    else:
        assert level == LEVELS[min(rank(previous), rank(lowered))]


@given(evidence_lists(max_size=16), configs(), st.integers(0, 16))
def test_folding_one_by_one_equals_folding_the_list(
    evidence: list[Evidence], config: AnalyzerConfig, split: int
) -> None:
    """Folding one by one, as a batch, or in two halves through JSON gives the same result."""
    one_by_one, state = fold(evidence, config)
    batch, batch_state = assess_many(INITIAL, evidence, config=config)
    head, middle = assess_many(INITIAL, evidence[:split], config=config)
    restored = EntityRiskState.model_validate_json(middle.model_dump_json())
    tail, end = assess_many(restored, evidence[split:], config=config)
    assert list(batch) == one_by_one == [*head, *tail]
    assert batch_state == state == end
    assert end.model_dump_json() == state.model_dump_json()


@given(evidence_lists(), configs(), enrichments)
def test_state_and_assessment_json_round_trips_are_exact(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """State and assessment survive a JSON round trip as equal values with identical bytes."""
    assessments, state = fold(evidence, config, signal)
    text = state.model_dump_json()
    again = EntityRiskState.model_validate_json(text)
    assert again == state
    assert again.model_dump_json() == text
    for assessment in assessments:
        restored = Assessment.model_validate_json(assessment.model_dump_json())
        assert restored == assessment
        assert restored.canonical_json() == assessment.canonical_json()


@given(evidence_lists(), configs(), enrichments)
def test_computed_models_equal_their_validated_twins(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """Assessments and states built without validation equal the same values validated."""
    assessments, state = fold(evidence, config, signal)
    assert EntityRiskState.model_validate(state.model_dump()) == state
    for assessment in assessments:
        assert Assessment.model_validate(assessment.model_dump()) == assessment


@given(evidence_lists(), configs())
def test_a_conservative_assessment_never_lowers_the_level(
    evidence: list[Evidence], config: AnalyzerConfig
) -> None:
    """A degraded assessment holds or raises the level and is flagged degraded."""
    *history, last = evidence
    state = fold(history, config)[1]
    normal, _ = assess(state, last, config=config)
    degraded, degraded_state = conservative_assessment(state, last, config=config)
    assert degraded.degraded
    assert not normal.degraded
    assert LEVELS.index(degraded.level) >= LEVELS.index(state.level)
    assert LEVELS.index(degraded.level) >= LEVELS.index(normal.level)
    assert degraded.confidence <= normal.confidence
    assert degraded.score == normal.score
    assert degraded_state.level == degraded.level


def test_copying_a_computed_model_leaves_the_original_alone() -> None:
    """``model_copy`` of a computed assessment or state changes only the copy."""
    config = AnalyzerConfig()
    first, state = assess(INITIAL, make_evidence(0), config=config)
    second, _ = assess(state, make_evidence(60), config=config)
    copy = first.model_copy(update={"score": 0.0})
    assert copy.score == 0.0
    assert first.score > 0.0
    assert first.model_fields_set == second.model_fields_set == set(Assessment.model_fields)
    assert state.model_copy(update={"last_sequence": 5}).last_sequence == 5
    assert state.last_sequence == 0


@given(evidence_lists(max_size=4), configs(), enrichments)
def test_an_enrichment_signal_moves_the_score_only_within_the_config_bounds(
    evidence: list[Evidence], config: AnalyzerConfig, signal: EnrichmentSignal | None
) -> None:
    """Whatever a service answers, the score stays between base x (1 + min) and the max's pull."""
    assume(signal is not None)
    assert signal is not None
    state = fold(evidence[:-1], config)[1]
    base, _ = assess(state, evidence[-1], config=config)
    enriched, _ = assess(state, evidence[-1], config=config, enrichment=signal)
    applied = applied_modifier(signal, config=config)
    assert config.enrichment_min_modifier <= applied <= config.enrichment_max_modifier
    lowest = base.score * (1.0 + config.enrichment_min_modifier)
    highest = base.score + config.enrichment_max_modifier * (1.0 - base.score)
    assert lowest - 1e-12 <= enriched.score <= highest + 1e-12
