"""Evidence v2 (impact, nested attributes): its limits, the v1 upcast, and how impact scores."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from analyzers import (
    AnalyzerConfig,
    EntityRiskState,
    Evidence,
    EvidenceData,
    EvidenceDataV2,
    InvalidEvidenceError,
    assess,
    decayed_score,
    parse_evidence_log,
    upcast_evidence,
)
from analyzers._evidence import MAX_ATTRIBUTES, MAX_NESTED_ATTRIBUTES

EVENT_TIME = datetime(2024, 5, 1, 12, tzinfo=UTC)
BASE = {"pattern": "failed_login_burst", "severity": "high", "confidence": 0.8}


def _v2(**changes: Any) -> EvidenceDataV2:
    return EvidenceDataV2.model_validate({**BASE, **changes}, context={"event_time": EVENT_TIME})


def _v1(**changes: Any) -> EvidenceData:
    return EvidenceData.model_validate({**BASE, **changes}, context={"event_time": EVENT_TIME})


def _evidence(data: EvidenceData | EvidenceDataV2, sequence: int = 1) -> Evidence:
    return Evidence.from_data(
        data, event_id=f"e{sequence}", source="idp", sequence=sequence, event_time=EVENT_TIME
    )


# -- the upcaster ---------------------------------------------------------------------


def test_the_upcaster_gives_v2_with_the_same_fields_and_no_impact() -> None:
    """Every v1 field is carried over as it is; impact is absent; the set fields are kept."""
    v1 = _v1(attributes={"ip": "10.0.0.1", "port": 22}, description="burst")
    v2 = upcast_evidence(v1)
    assert isinstance(v2, EvidenceDataV2)
    assert v2.impact is None
    for name in EvidenceData.model_fields:
        assert getattr(v2, name) == getattr(v1, name), name
    assert v2.model_fields_set == v1.model_fields_set
    assert v2 == _v2(attributes={"ip": "10.0.0.1", "port": 22}, description="burst")


def test_the_upcast_keeps_a_default_confidence_apart_from_a_reported_one() -> None:
    """Left out in v1, confidence is still "not reported" once read as v2."""
    v1 = EvidenceData.model_validate(
        {"pattern": "scan", "severity": "low"}, context={"event_time": EVENT_TIME}
    )
    v2 = upcast_evidence(v1)
    assert "confidence" not in v2.model_fields_set
    assert not _evidence(v2).confidence_reported
    assert v2.model_dump(mode="json", exclude_none=True, exclude_unset=True) == {
        "pattern": "scan",
        "severity": "low",
        "observed_at": "2024-05-01T12:00:00Z",
    }


def test_the_upcaster_refuses_anything_but_v1_data() -> None:
    """It is registered for v1 only; anything else is a programming error."""
    with pytest.raises(TypeError, match="not v1 evidence data: EvidenceDataV2"):
        upcast_evidence(_v2())


# -- v2's limits ----------------------------------------------------------------------


@pytest.mark.parametrize("impact", [0, 0.0, 0.25, 1, 1.0, None])
def test_impact_from_0_to_1_is_accepted(impact: float | None) -> None:
    """The edges are in; leaving it out (or null) is v1's behaviour."""
    assert _v2(impact=impact).impact == impact


@pytest.mark.parametrize(
    ("impact", "message"),
    [
        (-0.01, "greater than or equal to 0"),
        (-1e-300, "greater than or equal to 0"),
        (1.0000001, "less than or equal to 1"),
        (math.nan, "finite number"),
        (math.inf, "finite number"),
        ("0.5", "valid number"),
        (True, "valid number"),
    ],
)
def test_impact_outside_0_to_1_or_not_a_number_is_refused(impact: object, message: str) -> None:
    """Below 0, above 1, NaN, infinity, a string, a boolean: each names ``impact``."""
    with pytest.raises(ValidationError, match=message) as caught:
        _v2(impact=impact)
    assert caught.value.errors()[0]["loc"] == ("impact",)


def test_v1_has_no_impact_and_no_nested_attributes() -> None:
    """What v2 adds is refused in v1: the old version's rules do not change."""
    with pytest.raises(ValidationError, match="impact"):
        _v1(impact=0.5)
    with pytest.raises(ValidationError, match=r"attributes\.geo"):
        _v1(attributes={"geo": {"country": "NL"}})


def test_an_attribute_may_hold_one_object_of_scalars_up_to_the_limit() -> None:
    """One level, every scalar kind, 16 keys in it, 64 attributes around it."""
    full = {f"k{i}": i for i in range(MAX_NESTED_ATTRIBUTES)}
    nested = {"s": "x" * 512, "i": 1, "f": 0.5, "b": False, "n": None}
    attributes = {"geo": nested, "full": full, **{f"a{i}": {"v": i} for i in range(62)}}
    assert len(attributes) == MAX_ATTRIBUTES
    assert _v2(attributes=attributes).attributes == attributes


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"geo": {"city": {"name": "Delft"}}}, "geo.city: an attribute's object holds scalars"),
        ({"geo": {"cities": ["Delft"]}}, "geo.cities: an attribute's object holds scalars"),
        (
            {"geo": {f"k{i}": i for i in range(MAX_NESTED_ATTRIBUTES + 1)}},
            "geo: an attribute's object has at most 16 keys, not 17",
        ),
        ({f"a{i}": {"v": i} for i in range(MAX_ATTRIBUTES + 1)}, "at most 64 items"),
        ({"geo": {"bad key": 1}}, "should match pattern"),
        ({"geo": {"s": "x" * 513}}, "at most 512 characters"),
    ],
    ids=["depth-2", "list-inside", "17-keys", "65-attributes", "bad-key", "long-string"],
)
def test_attributes_past_the_limits_are_refused(
    attributes: dict[str, object], message: str
) -> None:
    """Depth 2, a list in an object, 17 keys in one, 65 attributes, a bad key, a long string."""
    with pytest.raises(ValidationError, match=message):
        _v2(attributes=attributes)


def test_evidence_refuses_an_impact_outside_0_to_1() -> None:
    """The domain object checks impact as it checks confidence."""
    with pytest.raises(InvalidEvidenceError, match=r"impact must be a finite number in \[0, 1\]"):
        Evidence(
            event_id="e",
            source="s",
            sequence=1,
            pattern="scan",
            severity="high",  # type: ignore[arg-type] # checked and converted
            confidence=1.0,
            observed_at=EVENT_TIME,
            impact=1.5,
        )


# -- scoring --------------------------------------------------------------------------


def test_v1_evidence_and_v2_without_impact_score_identically(config: AnalyzerConfig) -> None:
    """The same assessment and state, byte for byte: the upcast changes no score."""
    state = EntityRiskState.initial()
    from_v1 = assess(state, _evidence(_v1()), config=config)
    from_v2 = assess(state, _evidence(_v2()), config=config)
    assert from_v1 == from_v2
    assert from_v1[0].canonical_json() == from_v2[0].canonical_json()
    assert "impact_amplification" not in from_v1[0].contributions
    assert from_v1[1].impact_mass is None
    assert "impact" not in from_v1[1].model_dump_json(exclude_none=True)


def test_impact_adds_its_share_of_the_mass_as_impact_amplification(
    config: AnalyzerConfig,
) -> None:
    """High (0.6) x confidence 0.8 is 0.48; impact 0.5 adds 0.24, named as a contribution."""
    assessment, state = assess(EntityRiskState.initial(), _evidence(_v2(impact=0.5)), config=config)
    raw = 0.48 + 0.24
    score = 1.0 - 0.5**raw
    assert assessment.score == pytest.approx(score)
    assert assessment.contributions["impact_amplification"] == pytest.approx(0.24 / raw * score)
    assert assessment.contributions["evidence:failed_login_burst"] == pytest.approx(
        0.48 / raw * score
    )
    assert sum(assessment.contributions.values()) == pytest.approx(assessment.score, abs=1e-9)
    assert list(assessment.contributions) == sorted(assessment.contributions)
    assert (state.impact_mass, state.impact_seen) == (pytest.approx(0.24), EVENT_TIME)
    assert EntityRiskState.model_validate_json(state.model_dump_json()) == state


def test_impact_zero_is_reported_but_adds_nothing(config: AnalyzerConfig) -> None:
    """An impact of 0: the same score as none, with an explicit zero share."""
    plain, _ = assess(EntityRiskState.initial(), _evidence(_v2()), config=config)
    zero, _ = assess(EntityRiskState.initial(), _evidence(_v2(impact=0.0)), config=config)
    assert zero.score == plain.score
    assert zero.contributions["impact_amplification"] == 0.0


def test_analyzer_1_1_0_ignores_impact(config: AnalyzerConfig) -> None:
    """As 1.1.0 scored (no impact_amplification), v2 with an impact scores as without."""
    old = config.for_version("1.1.0")
    with_impact, state = assess(EntityRiskState.initial(), _evidence(_v2(impact=1.0)), config=old)
    without, _ = assess(EntityRiskState.initial(), _evidence(_v1()), config=old)
    assert with_impact == without
    assert state.impact_mass is None


def test_impact_decays_and_leaves_the_window(config: AnalyzerConfig) -> None:
    """The impact mass halves with the half-life and is gone, with its feature, past the window."""
    _, state = assess(EntityRiskState.initial(), _evidence(_v2(impact=1.0)), config=config)
    day = EVENT_TIME + timedelta(days=1)
    later = Evidence.from_data(
        _v1(severity="low", observed_at=day.isoformat()),
        event_id="e2", source="idp", sequence=2, event_time=day,
    )  # fmt: skip
    assessment, after = assess(state, later, config=config)
    assert after.impact_mass == pytest.approx(0.48 / 2)
    assert "impact_amplification" in assessment.contributions
    past = EVENT_TIME + timedelta(days=8)
    gone = Evidence.from_data(
        _v1(severity="low", observed_at=past.isoformat()),
        event_id="e3", source="idp", sequence=3, event_time=past,
    )  # fmt: skip
    assessment, final = assess(after, gone, config=config)
    assert (final.impact_mass, final.impact_seen) == (None, None)
    assert "impact_amplification" not in assessment.contributions
    assert decayed_score(state, at=EVENT_TIME, config=config) == pytest.approx(1.0 - 0.5**0.96)


def test_a_state_with_half_the_impact_fields_is_refused() -> None:
    """The mass and its last-seen time come together."""
    with pytest.raises(ValidationError, match="impact_mass and impact_seen must be set together"):
        EntityRiskState(impact_mass=0.5)


# -- the offline log ------------------------------------------------------------------


def test_an_offline_log_reads_v1_and_v2_events_each_by_its_version() -> None:
    """``riskpipe analyze`` takes what publish takes: v2 with its impact, v1 without one."""
    events = [
        {"id": "a", "source": "idp", "subject": "u1", "time": "2024-05-01T12:00:00Z",
         "data": {"pattern": "scan", "severity": "high"}},
        {"id": "b", "source": "edr", "subject": "u1", "time": "2024-05-01T12:01:00Z",
         "type": "riskpipe.evidence.recorded.v2",
         "data": {"pattern": "scan", "severity": "high", "impact": 0.5,
                  "attributes": {"geo": {"country": "NL"}}}},
    ]  # fmt: skip
    first, second = parse_evidence_log("\n".join(json.dumps(event) for event in events))
    assert (first.impact, second.impact) == (None, 0.5)
    assert second.attributes == {"geo": {"country": "NL"}}
    refused = {**events[0], "data": {**events[0]["data"], "impact": 0.5}}  # v1 has no impact
    with pytest.raises(InvalidEvidenceError, match="impact"):
        parse_evidence_log(json.dumps(refused))
