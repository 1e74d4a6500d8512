"""The producer client's plain path: the very event the envelope's validation would make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from eventstore._codec import encode_event
from riskpipe.client import Observation
from riskpipe.client._observation import (
    _ENTITIES,
    _ENTITIES_LIMIT,
    _ID,
    _KNOWN_LIMIT,
    _SOURCES,
    _TENANTS,
)
from riskpipe.wiring import build_schemas

SCHEMAS = build_schemas()
PLUS_FIVE = timezone(timedelta(hours=5))
BASE: dict[str, Any] = {
    "tenant": "acme",
    "entity": "user-42",
    "pattern": "failed_login_burst",
    "severity": "high",
    "id": "login-1",
    "source": "idp",
    "time": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"tenant": "t_1:@+=~%!#$&'()[],;?^`{|}", "entity": "-" * 128},
        {"id": "~" * 128, "source": "urn:x!" + "s" * 250},
        {"time": datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=PLUS_FIVE)},
        {"time": datetime(9999, 12, 31, 23, 0, tzinfo=UTC)},  # the edge day, in UTC: fine
        {"confidence": 0.5, "attributes": {"ip": "10.0.0.1", "n": 3}, "description": "d"},
        {"observed_at": datetime(2026, 2, 1, tzinfo=UTC)},
    ],
)
def test_a_plain_observation_makes_the_validated_event(changes: dict[str, Any]) -> None:
    """Equal to what validating ``fields()`` makes, the same attributes set, the same bytes."""
    observation = Observation(**{**BASE, **changes})
    plain = observation.plain_event()
    assert plain is not None
    validated = SCHEMAS.envelope_then_data(observation.fields())
    assert plain == validated
    assert plain.model_fields_set == validated.model_fields_set
    assert plain.extensions == validated.extensions == {}
    data = SCHEMAS.typed_data(validated)
    assert encode_event(plain, data) == encode_event(validated, data)


class _Later(datetime):
    """A ``datetime`` subclass: left to the validation, whatever it does."""


@pytest.mark.parametrize(
    "changes",
    [
        {"tenant": "acme.globex"},
        {"entity": "e1.>"},
        {"entity": "*"},
        {"entity": "é"},
        {"entity": ""},
        {"entity": "-" * 129},
        {"id": "a b"},
        {"id": "x\r\nNats-Msg-Id: y"},
        {"id": 7},
        {"source": ""},
        {"source": "s" * 257},
        {"time": datetime(2026, 3, 1, 12, 0)},  # noqa: DTZ001 - naive on purpose
        {"time": datetime(1, 1, 1, 3, 0, tzinfo=PLUS_FIVE)},
        {"time": _Later(2026, 3, 1, tzinfo=UTC)},
        {"time": "2026-03-01T12:00:00Z"},
        {"correlationid": "c-1"},
    ],
)
def test_anything_else_is_left_to_the_validation(changes: dict[str, Any]) -> None:
    """Not plainly valid: ``None``, and the validation decides (and words any refusal)."""
    assert Observation(**{**BASE, **changes}).plain_event() is None


def test_many_sources_and_tenants_are_each_checked_and_the_memory_stays_bounded() -> None:
    """Past the remembered few, each source is still checked, and a bad one is still refused."""
    for n in range(3000):
        assert Observation(**{**BASE, "source": f"svc-{n}", "tenant": f"t{n}"}).plain_event()
    assert len(_SOURCES) <= _KNOWN_LIMIT
    assert len(_TENANTS) <= _KNOWN_LIMIT
    assert Observation(**{**BASE, "source": ""}).plain_event() is None
    assert Observation(**{**BASE, "tenant": "t1.t2"}).plain_event() is None


@pytest.mark.parametrize(
    "event_id",
    [
        "",
        "!",
        "~",
        "a" * 128,
        "a" * 129,
        " ",
        "a b",
        "a\tb",
        "a\x7fb",
        "a\x00b",
        "caf\u00e9",
        "\u00a0x",
        "x\u2028",
        "\x21\x7e",
    ],
)
def test_the_id_is_checked_by_hand_exactly_as_its_pattern_says(event_id: str) -> None:
    """The hand-made check of an id (length, ASCII, printable, no space) is the pattern's."""
    plain = Observation(**{**BASE, "id": event_id}).plain_event()
    assert (plain is not None) == bool(_ID.fullmatch(event_id))


def test_many_entities_are_each_checked_and_the_memory_stays_bounded() -> None:
    """Past the remembered entities, each is still checked, and a bad one is still refused."""
    for n in range(_ENTITIES_LIMIT + 10):
        assert Observation(**{**BASE, "entity": f"e{n}"}).plain_event()
    assert len(_ENTITIES) <= _ENTITIES_LIMIT
    assert Observation(**{**BASE, "entity": "e1.e2"}).plain_event() is None
