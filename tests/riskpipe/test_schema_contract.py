"""`riskpipe schema --publish` describes exactly the lines `riskpipe publish` accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from support.events import evidence_line

from eventstore.errors import DecodeError
from riskpipe.cli import main
from riskpipe.ingest import NotEvidenceError, publishable
from riskpipe.wiring import build_schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = build_schemas()
ABSENT = object()
"""A field left out of the event."""


def _ecma_pattern(
    validator: Any,
    pattern: str,
    instance: object,
    schema: dict[str, Any],
) -> Any:
    r"""``pattern`` as JSON Schema defines it (ECMA-262): ``$`` is the end of the string.

    Python's ``re`` also lets ``$`` match before one final newline, so the
    ``jsonschema`` package would let ``"id\n"`` through where every ECMA
    engine (and riskpipe) refuses it.
    """
    del schema
    ecma = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
    if validator.is_type(instance, "string") and not re.search(ecma, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@pytest.fixture(scope="module")
def validator() -> Any:
    """A validator of the schema `riskpipe schema --publish` prints, formats checked."""
    result = CliRunner().invoke(main, ["schema", "--publish"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    return _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _published(line: bytes) -> bool:
    """Whether `riskpipe publish` accepts the line (its own parser, no server needed)."""
    try:
        publishable(SCHEMAS, line, max_bytes=1024 * 1024)
    except (DecodeError, NotEvidenceError):
        return False
    return True


def _agree(validator: Any, event: dict[str, Any]) -> bool:
    """Assert the schema and publish agree on ``event``; return whether both accept it."""
    accepted = _published(json.dumps(event).encode())
    errors = [e.message for e in validator.iter_errors(event)]
    assert accepted == (not errors), (event, errors)
    return accepted


def _readme_tour_events() -> list[dict[str, Any]]:
    """The evidence lines of the README's 60-second tour."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("cat > evidence.jsonl <<'JSONL'\n", 1)[1].split("\nJSONL", 1)[0]
    return [json.loads(line) for line in block.splitlines()]


def test_the_readme_tour_events_are_valid_for_both(validator: Any) -> None:
    """The README's own events, which leave `type` out, pass the published schema and publish."""
    events = _readme_tour_events()
    assert len(events) == 2
    assert all("type" not in event for event in events)
    assert all(_agree(validator, event) for event in events)


def test_the_envelope_schema_does_not_require_type() -> None:
    """`riskpipe schema` marks `type` optional in the envelope, with evidence as its default."""
    envelope = json.loads(CliRunner().invoke(main, ["schema"]).stdout)["envelope"]
    assert "type" not in envelope["required"]
    assert envelope["properties"]["type"]["default"] == "riskpipe.evidence.recorded.v1"


GOOD: dict[str, Any] = json.loads(evidence_line("a1"))

CASES: list[tuple[str, Any, bool]] = [
    ("type", ABSENT, True),
    ("type", "riskpipe.risk.assessed.v1", False),
    ("type", "riskpipe.evidence.recorded.v2", True),
    ("type", "riskpipe.evidence.recorded.v3", False),
    ("data.impact", 0.5, False),
    ("data.attributes", {"geo": {"country": "NL"}}, False),
    ("time", "2026-11-29T08:00:00.123456+05:30", True),
    ("time", "2026-11-29T08:00:00.123456789+05:30", False),
    ("time", "1900-01-01T00:00:00Z", False),
    ("time", "1970-01-01T00:30:00+01:00", False),
    ("time", "1970-01-02T00:30:00+01:00", True),
    ("time", "9999-12-31T23:59:59-05:00", False),
    ("time", "9999-12-31T23:59:59Z", True),
    ("time", "0001-01-01T00:00:00+05:00", False),
    ("time", "2026-11-29T08:00Z", False),
    ("time", "2026-11-29 08:00:00Z", False),
    ("time", "2026-11-29T08:00:00", False),
    ("time", "1700000000", False),
    ("time", 1700000000, False),
    ("time", "2026-02-30T08:00:00Z", False),
    ("time", "2024-02-29T08:00:00Z", True),
    ("id", "a1\n", False),
    ("id", "a" * 129, False),
    ("subject", "user.42", False),
    ("tenant", ABSENT, True),
    ("specversion", "0.3", False),
    ("extra", 1, True),
    ("partitionkey", "p" * 256, True),
    ("partitionkey", "p" * 257, False),
    ("partitionkey", "a\nb", False),
    ("partitionkey", True, True),
    ("partitionkey", 2**31, False),
    ("partitionkey", 1.5, False),
    ("partitionkey", [1], False),
    ("partitionkey", None, True),
    ("PartitionKey", "p", False),
    ("abcdefghijklmnopqrstu", "p", False),
    ("data_base64", "AAAA", False),
    ("dataschema", "https://example.com/evidence.json", True),
    ("dataschema", "not a uri", False),
    ("datacontenttype", "application/json; charset=utf-8", True),
    ("datacontenttype", "application/vnd.acme+json", True),
    ("datacontenttype", "text/plain", False),
    ("data", None, False),
    ("data", ABSENT, False),
    ("data.confidence", "0.5", False),
    ("data.confidence", True, False),
    ("data.confidence", 1, True),
    ("data.confidence", 1.5, False),
    ("data.severity", "HIGH", False),
    ("data.observed_at", None, True),
    ("data.observed_at", "1900-01-01T00:00:00Z", False),
    ("data.observed_at", "1969-12-31T23:30:00-01:00", False),
    ("data.observed_at", "1970-01-01T00:00:00+00:00", True),
    ("data.observed_at", "9999-12-31T23:59:59-05:00", False),
    ("data.observed_at", "2026-11-29T08:00:00.1234567Z", False),
    ("data.observed_at", "2026-11-29T08:00:00+0100", False),
    ("data.attributes", {"ip": "10.0.0.1", "port": 22, "ok": True, "none": None}, True),
    ("data.attributes", {"bad key": 1}, False),
    ("data.attributes", {"k": [1]}, False),
    ("data.attributes", {f"k{i}": i for i in range(65)}, False),
    ("data.description", "x" * 1000, True),
    ("data.description", "x" * 1001, False),
]


GOOD_V2: dict[str, Any] = {
    **GOOD,
    "type": "riskpipe.evidence.recorded.v2",
    "data": {**GOOD["data"], "impact": 0.5},
}
"""A valid v2 evidence event: it reports an impact."""

_NESTED_FULL = {f"k{i}": i for i in range(16)}
CASES_V2: list[tuple[str, Any, bool]] = [
    ("type", ABSENT, False),  # a line without a type is v1, which has no impact
    ("type", "riskpipe.evidence.recorded.v1", False),
    ("data.impact", ABSENT, True),
    ("data.impact", None, True),
    ("data.impact", 0, True),
    ("data.impact", 1, True),
    ("data.impact", 0.0, True),
    ("data.impact", 1.0, True),
    ("data.impact", -0.01, False),
    ("data.impact", 1.01, False),
    ("data.impact", "0.5", False),
    ("data.impact", True, False),
    ("data.attributes", {"ip": "10.0.0.1", "port": 22, "ok": True, "none": None}, True),
    ("data.attributes", {"geo": {"country": "NL", "asn": 1136, "eu": True, "x": None}}, True),
    ("data.attributes", {"geo": {}}, True),
    ("data.attributes", {"geo": _NESTED_FULL}, True),
    ("data.attributes", {"geo": {**_NESTED_FULL, "k16": 16}}, False),
    ("data.attributes", {"geo": {"city": {"name": "Delft"}}}, False),
    ("data.attributes", {"geo": {"cities": ["Delft"]}}, False),
    ("data.attributes", {"geo": {"bad key": 1}}, False),
    ("data.attributes", {"geo": {"s": "x" * 512}}, True),
    ("data.attributes", {"geo": {"s": "x" * 513}}, False),
    ("data.attributes", {"k": [1]}, False),
    ("data.attributes", {f"k{i}": {"v": i} for i in range(64)}, True),
    ("data.attributes", {f"k{i}": {"v": i} for i in range(65)}, False),
    ("data.pattern", "Bad", False),
]


def _with(event: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``event`` with the field at ``path`` (``data.x`` for a data field) set or left out."""
    out = {**event, "data": {**event["data"]}}
    *parents, name = path.split(".")
    target = out["data"] if parents else out
    if value is ABSENT:
        target.pop(name, None)
    else:
        target[name] = value
    return out


@pytest.mark.parametrize(("path", "value", "accepted"), CASES, ids=[c[0] for c in CASES])
def test_schema_and_publish_agree_on_each_case(
    validator: Any,
    path: str,
    value: object,
    accepted: bool,  # noqa: FBT001 - a parameter
) -> None:
    """Each hand-picked event is accepted by both the schema and publish, or by neither."""
    assert _agree(validator, _with(GOOD, path, value)) is accepted


@pytest.mark.parametrize(("path", "value", "accepted"), CASES_V2, ids=[c[0] for c in CASES_V2])
def test_schema_and_publish_agree_on_each_v2_case(
    validator: Any,
    path: str,
    value: object,
    accepted: bool,  # noqa: FBT001 - a parameter
) -> None:
    """v2 events, at and past each limit (impact, nesting, keys), are judged alike by both."""
    assert _agree(validator, _with(GOOD_V2, path, value)) is accepted


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.datetimes(timezones=st.just(None)).map(lambda t: t.isoformat() + "Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z\Z"),
    st.from_regex(
        r"\A(0001-01-01|1969-12-31|1970-01-01|9999-12-31)T[0-9]{2}:[0-9]{2}:[0-9]{2}"
        r"(\.[0-9]{5,8})?(Z|[+-][0-2][0-9]:[0-5][0-9])\Z"
    ),
    _TEXT,
    st.integers(),
)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                     allow_infinity=False), _TEXT)  # fmt: skip
_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "id": st.one_of(st.from_regex(r"\A[!-~]{1,130}\Z"), _TEXT, _SCALARS),
    "source": st.one_of(st.from_regex(r"\A[!-~ ]{1,20}\n?\Z"), _SCALARS),
    "subject": st.one_of(st.from_regex(r"\A[A-Za-z0-9_.*>:@\[\]-]{1,130}\Z"), _SCALARS),
    "tenant": st.one_of(st.from_regex(r"\A[A-Za-z0-9 .]{0,4}\Z"), _SCALARS),
    "type": st.sampled_from(
        [
            "riskpipe.evidence.recorded.v1",
            "riskpipe.evidence.recorded.v2",
            "riskpipe.risk.assessed.v1",
            "x.v1",
            "Bad",
            None,
        ]
    ),
    "time": _TIMES,
    "correlationid": st.one_of(st.from_regex(r"\A[!-~]{0,3}\Z"), _SCALARS),
    "data.pattern": st.one_of(st.from_regex(r"\A[a-z_0-9A]{0,5}\Z"), _SCALARS),
    "data.severity": st.sampled_from(["low", "medium", "high", "critical", "High", "", None]),
    "data.confidence": st.one_of(st.floats(-0.5, 1.5), st.integers(-1, 2), _SCALARS),
    "data.observed_at": st.one_of(_TIMES, st.none()),
    "data.impact": st.one_of(st.floats(-0.5, 1.5), st.integers(-1, 2), _SCALARS),
    "data.attributes": st.one_of(
        st.dictionaries(st.from_regex(r"\A[A-Za-z_-][A-Za-z0-9 _-]{0,3}\Z"), _SCALARS, max_size=4),
        st.dictionaries(st.just("k"), st.lists(st.integers(), max_size=1)),
        st.dictionaries(
            st.sampled_from(["geo", "bad key"]),
            st.one_of(
                st.dictionaries(st.sampled_from(["a", "b c"]), _SCALARS, max_size=2),
                st.dictionaries(st.just("a"), st.dictionaries(st.just("b"), _SCALARS)),
            ),
            max_size=2,
        ),
        _SCALARS,
    ),
    "data.description": st.one_of(st.text(max_size=3), st.just("y" * 1001), _SCALARS),
}


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid evidence event with a few fields changed, left out, or given odd values."""
    event = GOOD
    for path in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=3, unique=True)):
        value = draw(st.one_of(st.just(ABSENT), _FIELDS[path]))
        event = _with(event, path, value)
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=_events())
def test_schema_and_publish_agree_on_generated_events(
    validator: Any, event: dict[str, Any]
) -> None:
    """Generated events, valid or not, pass the schema exactly when publish takes them."""
    _agree(validator, event)
