"""Strict decoding: every kind of bad input gets its own typed, readable error."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import pytest
from pydantic import BaseModel, ConfigDict
from support.events import evidence_line

from eventstore import CloudEvent, EventSchemas, decode_json, encode_event
from eventstore._codec import nesting_depth
from eventstore.errors import (
    DecodeError,
    InvalidUTF8Error,
    MalformedJSONError,
    NestingTooDeepError,
    PayloadTooLargeError,
    SchemaViolationError,
    UnknownEventTypeError,
)
from riskpipe.wiring import build_schemas


@pytest.fixture
def schemas() -> EventSchemas:
    """The registry riskpipe uses."""
    return build_schemas()


GOOD = evidence_line("a1")


def test_valid_event_is_normalised(schemas: EventSchemas) -> None:
    """A valid event parses with observed_at made explicit; unset defaults stay unset."""
    event = schemas.parse(GOOD.encode())
    assert event.data is not None
    assert event.data["observed_at"] == "2026-01-01T00:00:00Z"
    assert "confidence" not in event.data, "the producer did not report a confidence"
    typed = schemas.typed_data(event)
    assert typed.confidence == 1.0  # type: ignore[attr-defined]


def test_missing_type_defaults_to_evidence(schemas: EventSchemas) -> None:
    """A line without a type is read as evidence."""
    line = GOOD.replace('"type":"riskpipe.evidence.recorded.v1",', "")
    assert schemas.parse(line.encode()).type == "riskpipe.evidence.recorded.v1"


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b'{"id": "\xff\xfe"}', InvalidUTF8Error, "UTF-8"),
        (b'{"id": ', MalformedJSONError, "malformed JSON"),
        (b'{"a": NaN}', MalformedJSONError, "NaN"),
        (b'{"a": Infinity}', MalformedJSONError, "Infinity"),
        (b'{"a": -Infinity}', MalformedJSONError, "Infinity"),
        (b'{"a": 1, "a": 2}', MalformedJSONError, "duplicate key 'a'"),
        (b'{"a":NaN}', MalformedJSONError, "NaN"),
        (b"[" * 40 + b"]" * 40, NestingTooDeepError, "limit is 16"),
        (b"[" * 60_000, NestingTooDeepError, "limit"),
        (b'"just a string"', MalformedJSONError, "JSON object"),
    ],
)
def test_bad_bytes_are_refused(
    schemas: EventSchemas, payload: bytes, error: type[DecodeError], message: str
) -> None:
    """Each malformed payload raises its own DecodeError subclass with a useful message."""
    with pytest.raises(error, match=message):
        schemas.parse(payload)


_INNER = {
    "canonical": b'{"k":"[{ \\" ]}"}',  # compact and sorted: the fast path
    "strict": b'{"k": "[{ \\" ]}"}',  # anything else: the strict decoder
}


def _nested(depth: int, path: str) -> bytes:
    """``depth`` levels: arrays in one another around an object whose string holds brackets."""
    return b"[" * (depth - 1) + _INNER[path] + b"]" * (depth - 1)


@pytest.mark.parametrize("path", _INNER)
@pytest.mark.parametrize("limit", [4, 16, 256])
def test_nesting_at_the_limit_passes_and_one_past_it_is_refused(limit: int, path: str) -> None:
    """Exactly ``max_depth`` levels decode; one more is refused, naming the depth and the limit."""
    at_limit = decode_json(_nested(limit, path), max_depth=limit)
    for _ in range(limit - 1):
        at_limit = at_limit[0]
    assert at_limit == {"k": '[{ " ]}'}, "brackets inside a string do not nest"
    with pytest.raises(NestingTooDeepError, match=f"nests {limit + 1} levels deep, the limit is"):
        decode_json(_nested(limit + 1, path), max_depth=limit)


@pytest.mark.parametrize("depth", [300, 400, 600, 1000, 5000, 30_000])
@pytest.mark.parametrize("path", _INNER)
def test_deep_nesting_is_refused_the_same_on_every_interpreter(depth: int, path: str) -> None:
    """However deep, nesting is refused by count, never by the interpreter's recursion limit."""
    with pytest.raises(NestingTooDeepError, match=f"nests {depth} levels deep, the limit is 16"):
        decode_json(_nested(depth, path))


@pytest.mark.parametrize(
    ("payload", "depth"),
    [
        (b"", 0),
        (b'"[[[["', 0),
        (b'{"a":"\\"}', 1),
        (b'[{"a":"]]]"},[[1]]]', 3),
        (b'{"a":"[[[[\\"[[[","b":[{}]}', 3),
        (b'["[[[[[[', 1),  # an unterminated string runs to the end
        (b'["abc\\', 1),
    ],
)
def test_nesting_is_counted_outside_strings(payload: bytes, depth: int) -> None:
    """The depth is read from the bytes, brackets in strings (even unterminated ones) left out."""
    assert nesting_depth(payload) == depth


def test_oversized_payload_is_refused() -> None:
    """A payload over the limit is refused before it is parsed."""
    with pytest.raises(PayloadTooLargeError, match="70000 bytes, the limit is 65536"):
        decode_json(b" " * 70000)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"subject":"e1"', '"subject":"e.1"', "subject: invalid subject 'e.1'"),
        ('"subject":"e1"', '"subject":"e*"', "invalid subject"),
        ('"subject":"e1"', '"subject":"e>"', "invalid subject"),
        ('"subject":"e1"', '"subject":"e 1"', "invalid subject"),
        ('"tenant":"t1"', '"tenant":"t.1"', "tenant: invalid tenant 't.1'"),
        ('"id":"a1"', '"id":"a 1"', "invalid id"),
        ('"source":"test-src"', '"source":"a\\r\\nb"', "invalid source"),
        ('"time":"2026-01-01T00:00:00Z"', '"time":"yesterday"', "time"),
        ('"time":"2026-01-01T00:00:00Z"', '"time":"2026-01-01T00:00:00"', "timezone"),
        ('"severity":"high"', '"severity":"extreme"', "severity"),
        ('"pattern":"failed_login_burst"', '"pattern":"Failed Login"', "invalid pattern"),
        ('"severity":"high"', '"severity":"high","confidence":1.5', "confidence"),
        ('"severity":"high"', '"severity":"high","extra":1', "extra"),
        ('"specversion":"1.0"', '"specversion":"0.3"', "specversion"),
    ],
)
def test_schema_violations_name_the_field(
    schemas: EventSchemas, old: str, new: str, message: str
) -> None:
    """A schema violation says which field is wrong and why."""
    line = GOOD.replace(old, new)
    assert line != GOOD, f"test setup: {old!r} not in line"
    with pytest.raises(SchemaViolationError, match=message):
        schemas.parse(line.encode())


def test_missing_required_field(schemas: EventSchemas) -> None:
    """A missing required field is named."""
    line = GOOD.replace('"pattern":"failed_login_burst",', "")
    with pytest.raises(SchemaViolationError, match=r"data\.pattern: Field required"):
        schemas.parse(line.encode())


def test_unknown_type_lists_known_types(schemas: EventSchemas) -> None:
    """An unknown type is its own error and lists the types that exist."""
    line = GOOD.replace("riskpipe.evidence.recorded.v1", "riskpipe.evidence.recorded.v9")
    with pytest.raises(
        UnknownEventTypeError, match=r"known types: .*riskpipe\.evidence\.recorded\.v1"
    ):
        schemas.parse(line.encode())


def test_attributes_must_be_flat_and_bounded(schemas: EventSchemas) -> None:
    """Attributes hold scalars only, at most 64 keys."""
    nested = GOOD.replace('"severity":"high"', '"severity":"high","attributes":{"a":{"b":1}}')
    with pytest.raises(SchemaViolationError, match="attributes"):
        schemas.parse(nested.encode())
    many = ",".join(f'"k{i}":{i}' for i in range(65))
    wide = GOOD.replace('"severity":"high"', f'"severity":"high","attributes":{{{many}}}')
    with pytest.raises(SchemaViolationError, match=r"attributes: .*at most 64"):
        schemas.parse(wide.encode())


def test_description_is_bounded(schemas: EventSchemas) -> None:
    """A description over 1,000 characters is refused."""
    long = GOOD.replace('"severity":"high"', '"severity":"high","description":"' + "x" * 1001 + '"')
    with pytest.raises(SchemaViolationError, match="description"):
        schemas.parse(long.encode())


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":[1,1.5,-0.0,1e-07,"\\u00e9",true,null],"b":{"c":"x\\"y"}}',
        '{"a":[1,1.5,-0.0,1e-07,"é",true,null],"b":{"c":"x\\"y"}}'.encode(),
        b'{"b":{"c":"x\\"y"},"a":[1,1.5,-0.0,1e-07,"\\u00e9",true,null]}',
        b'{ "a": [1, 1.5, -0.0, 1E-7, "\\u00e9", true, null], "b": {"c": "x\\"y"} }',
    ],
)
def test_every_spelling_decodes_to_the_same_value(payload: bytes) -> None:
    """Canonical JSON (read by the fast path) and other spellings decode alike, types included."""
    value = decode_json(payload)
    expected = {"a": [1, 1.5, -0.0, 1e-07, "é", True, None], "b": {"c": 'x"y'}}
    assert value == expected
    assert [type(v) for v in value["a"]] == [type(v) for v in expected["a"]]  # type: ignore[index]
    assert str(value["a"][2]) == "-0.0"


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b'{"a":1,"a":2}', MalformedJSONError, "duplicate key 'a'"),
        (b'{"a":{"b":1,"b":1}}', MalformedJSONError, "duplicate key 'b'"),
        (b"[" * 300 + b"]" * 300, NestingTooDeepError, "limit is 256"),
    ],
)
def test_compact_payloads_are_as_strict(
    payload: bytes, error: type[DecodeError], message: str
) -> None:
    """Compact, sorted JSON is refused for the same reasons: duplicates, nesting."""
    with pytest.raises(error, match=message):
        decode_json(payload, max_depth=256)


class _Level(StrEnum):
    HIGH = "high"
    LOW = "low"


class _Masses(BaseModel):
    by_level: dict[_Level, float]
    note: str | None = None


class _Opaque(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: object


def test_encoding_writes_enum_keys_as_sorted_strings() -> None:
    """Data with enum dict keys is written canonically, the same bytes every time."""
    event = CloudEvent(id="a1", source="s", type="x.v1", subject="e1", time=datetime.now(UTC))
    data = _Masses(by_level={_Level.LOW: 1.0, _Level.HIGH: 2.0})
    first, second = encode_event(event, data), encode_event(event, data)
    assert first == second
    assert b'"data":{"by_level":{"high":2.0,"low":1.0}}' in first


def test_encoding_what_json_cannot_hold_is_a_typed_error() -> None:
    """A value JSON cannot represent raises MalformedJSONError, not a bare TypeError."""
    event = CloudEvent(id="a1", source="s", type="x.v1", subject="e1", time=datetime.now(UTC))
    with pytest.raises(MalformedJSONError, match="cannot encode as JSON"):
        encode_event(event, _Opaque(thing=object()))
