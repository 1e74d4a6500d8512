"""The Evidence domain object and its construction from recorded event data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from analyzers import Evidence, EvidenceData, InvalidEvidenceError, Severity

EVENT_TIME = datetime(2024, 5, 1, 12, tzinfo=UTC)


def from_data(data: dict[str, object]) -> Evidence:
    """Evidence built from ``data`` as the projection worker would build it."""
    return Evidence.from_data(
        EvidenceData.model_validate(data),
        event_id="evt-1",
        source="idp",
        sequence=42,
        event_time=EVENT_TIME,
    )


def test_from_data_falls_back_to_the_event_time() -> None:
    """Without observed_at the evidence is observed at the envelope time, with no lag."""
    evidence = from_data({"pattern": "scan", "severity": "high"})
    assert evidence.observed_at == EVENT_TIME
    assert evidence.recorded_at == EVENT_TIME
    assert evidence.lag_seconds == 0.0
    assert (evidence.event_id, evidence.source, evidence.sequence) == ("evt-1", "idp", 42)
    assert evidence.severity is Severity.HIGH
    assert evidence.confidence == 1.0
    assert not evidence.confidence_reported


def test_from_data_keeps_the_producer_observation_time_and_confidence() -> None:
    """An explicit observed_at gives a recording lag; an explicit confidence is reported."""
    evidence = from_data(
        {
            "pattern": "scan",
            "severity": "low",
            "confidence": 0.4,
            "observed_at": "2024-05-01T10:00:00+02:00",
            "attributes": {"ip": "10.0.0.1"},
        }
    )
    assert evidence.observed_at == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert evidence.observed_at.tzinfo is UTC
    assert evidence.lag_seconds == 4 * 3600.0
    assert evidence.confidence_reported
    assert evidence.attributes == {"ip": "10.0.0.1"}


@pytest.mark.parametrize(
    "data",
    [
        {"pattern": "scan", "severity": "high"},
        {
            "pattern": "scan",
            "severity": "critical",
            "confidence": 0.25,
            "observed_at": "2024-05-01T16:30:00+05:30",
            "attributes": {"ip": "10.0.0.1", "n": 3},
        },
        {"pattern": "late", "severity": "low", "observed_at": "2024-05-02T00:00:00Z"},
        # the era is checked on the time as given, before it is moved to UTC
        {"pattern": "edge", "severity": "low", "observed_at": "1970-01-02T00:30:00+01:00"},
    ],
)
def test_from_data_equals_the_checked_construction(data: dict[str, object]) -> None:
    """The unchecked fast path builds exactly what the checking constructor builds."""
    validated = EvidenceData.model_validate(data)
    fast = Evidence.from_data(
        validated, event_id="evt-1", source="idp", sequence=42, event_time=EVENT_TIME
    )
    checked = Evidence(
        event_id="evt-1",
        source="idp",
        sequence=42,
        pattern=validated.pattern,
        severity=validated.severity,
        confidence=validated.confidence,
        observed_at=validated.observed(EVENT_TIME),
        attributes=dict(validated.attributes),
        recorded_at=EVENT_TIME,
        confidence_reported="confidence" in data,
    )
    assert fast == checked
    assert fast.lag_seconds == checked.lag_seconds
    assert fast.observed_at.tzinfo is UTC
    assert fast.recorded_at is not None
    assert fast.recorded_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ({"event_id": ""}, "event_id must not be empty"),
        ({"sequence": -1}, "sequence must be an integer"),
        ({"event_time": datetime(1960, 1, 1, tzinfo=UTC)}, "years 1970 to 9999"),
        (
            {"event_time": datetime(1969, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))},
            "years 1970 to 9999",
        ),
    ],
)
def test_from_data_still_refuses_bad_envelope_facts(
    envelope: dict[str, object], message: str
) -> None:
    """What the data model does not check, from_data does: a clear InvalidEvidenceError."""
    facts: dict[str, object] = {
        "event_id": "e",
        "source": "s",
        "sequence": 0,
        "event_time": EVENT_TIME,
        **envelope,
    }
    data = EvidenceData.model_validate({"pattern": "scan", "severity": "low"})
    with pytest.raises(InvalidEvidenceError, match=message):
        Evidence.from_data(data, **facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"observed_at": datetime(2024, 5, 1)}, "timezone-aware"),  # noqa: DTZ001 - the naive time under test
        ({"confidence": 1.5}, "confidence must be a finite number"),
        ({"confidence": float("nan")}, "confidence must be a finite number"),
        ({"sequence": -1}, "sequence must be an integer"),
        ({"pattern": "Bad Pattern"}, "invalid pattern"),
        ({"severity": "extreme"}, "invalid severity"),
        ({"event_id": ""}, "event_id must not be empty"),
        ({"observed_at": datetime(1900, 1, 1, tzinfo=UTC)}, "years 1970 to 9999"),
        # in the era as given, out of it once stored in UTC (1969-12-31T23:30:00Z)
        (
            {"observed_at": datetime(1970, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))},
            "years 1970 to 9999",
        ),
        ({"recorded_at": datetime(2024, 5, 1)}, "recorded_at must be"),  # noqa: DTZ001 - the naive time under test
    ],
)
def test_invalid_evidence_is_a_value_error(changes: dict[str, object], message: str) -> None:
    """Out-of-range fields raise InvalidEvidenceError, which is also a ValueError."""
    fields: dict[str, object] = {
        "event_id": "e",
        "source": "s",
        "sequence": 0,
        "pattern": "scan",
        "severity": Severity.LOW,
        "confidence": 0.5,
        "observed_at": EVENT_TIME,
    }
    with pytest.raises(InvalidEvidenceError, match=message) as caught:
        Evidence(**{**fields, **changes})  # type: ignore[arg-type] # deliberately wrong values
    assert isinstance(caught.value, ValueError)


def test_times_are_normalised_to_utc() -> None:
    """Equal instants in different offsets make equal evidence."""
    plus_two = timezone(timedelta(hours=2))
    local = Evidence(
        event_id="e",
        source="s",
        sequence=0,
        pattern="scan",
        severity=Severity.LOW,
        confidence=0.5,
        observed_at=datetime(2024, 5, 1, 14, tzinfo=plus_two),
    )
    utc = Evidence(
        event_id="e",
        source="s",
        sequence=0,
        pattern="scan",
        severity=Severity.LOW,
        confidence=0.5,
        observed_at=EVENT_TIME,
    )
    assert local == utc
    assert local.observed_at.utcoffset() == timedelta(0)
