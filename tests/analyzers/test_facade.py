"""The ``analyze_risk_patterns`` compatibility facade: results and error paths."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.events import SAMPLE_LOG as LOG

from analyzers import ANALYZER_VERSION, AnalyzerConfig, analyze_risk_patterns
from analyzers._log import MAX_LOG_DEPTH

KEYS = {
    "status",
    "risk_score",
    "risk_level",
    "patterns_analyzed",
    "confidence",
    "contributions",
    "recommendations",
    "retries",
    "analyzer_version",
}


async def test_a_valid_log_is_analysed() -> None:
    """The documented example log gives score 0.875, level critical, explained."""
    result = await analyze_risk_patterns(json.dumps(LOG))
    assert set(result) == KEYS
    assert result["status"] == "ANALYSIS"
    assert result["risk_score"] == pytest.approx(0.875)
    assert result["risk_level"] == "critical"
    assert result["confidence"] == pytest.approx(0.758387, abs=1e-6)
    assert result["patterns_analyzed"] == [
        "failed_login_burst",
        "impossible_travel",
        "malware_detected",
    ]
    assert sum(result["contributions"].values()) == pytest.approx(result["risk_score"])
    assert result["retries"] == 0
    assert result["analyzer_version"] == ANALYZER_VERSION
    assert json.loads(json.dumps(result)) == result


async def test_wrapped_and_json_lines_logs_give_the_same_result() -> None:
    """``{"evidence": [...]}`` and JSON lines are read like a plain array."""
    plain = await analyze_risk_patterns(json.dumps(LOG))
    wrapped = await analyze_risk_patterns(json.dumps({"evidence": LOG}))
    lines = await analyze_risk_patterns("\n".join(json.dumps(item) for item in LOG) + "\n")
    assert plain == wrapped == lines


async def test_entries_without_their_own_confidence_lower_the_confidence() -> None:
    """Completeness is the decayed share of entries with a confidence: 1 of 2.5, so 0.6384."""
    bare = [{key: value for key, value in item.items() if key != "confidence"} for item in LOG]
    bare[2]["confidence"] = 0.95
    result = await analyze_risk_patterns(json.dumps(bare))
    assert result["risk_score"] == pytest.approx(0.875)
    assert result["confidence"] == pytest.approx(0.758387 - 0.2 * 1.5 / 2.5, abs=1e-6)


async def test_a_custom_config_is_used() -> None:
    """Passing a config changes the scoring accordingly."""
    strict = AnalyzerConfig(saturation=0.5)
    default = await analyze_risk_patterns(json.dumps(LOG[:1]))
    custom = await analyze_risk_patterns(json.dumps(LOG[:1]), config=strict)
    assert custom["risk_score"] == pytest.approx(1 - 2**-1.2)
    assert custom["risk_score"] > default["risk_score"]


@pytest.mark.parametrize(
    ("log", "message"),
    [
        ("", "the evidence log is empty"),
        ("   \n", "the evidence log is empty"),
        ("[]", "the evidence log is empty"),
        ('{"evidence": []}', "the evidence log is empty"),
        ("[{", "malformed JSON"),
        ("not json", "malformed JSON"),
        ("42", "got a number"),
        ('"text"', "got a string"),
        ("null", "got null"),
        ("[1, 2]", "evidence[0]: expected an evidence object, got a number"),
        ('{"evidence": {"pattern": "x"}}', '"evidence" must be a JSON array, got an object'),
        ('{"evidence": [], "entity": "x"}', "unexpected keys entity"),
        (
            '[{"pattern": "scan", "severity": "extreme", "observed_at": "2024-05-01T00:00:00Z"}]',
            "evidence[0].severity: Input should be",
        ),
        ('[{"pattern": "scan", "severity": "low"}]', "evidence[0].observed_at: Field required"),
        (
            '[{"pattern": "scan", "severity": "low", "observed_at": "2024-05-01T00:00:00"}]',
            "evidence[0].observed_at: Input should have timezone info",
        ),
        (
            '[{"pattern": "scan", "severity": "low", "confidence": NaN, "observed_at": "x"}]',
            "NaN is not valid JSON",
        ),
        ('[{"pattern": "scan", "pattern": "scan"}]', "duplicate key 'pattern'"),
        ("[" * 5000 + "]" * 5000, "nests too deeply"),
        (
            '{"pattern": "scan", "severity": "low", "observed_at": "2024-05-01T00:00:00Z"}\n[1',
            "line 2: malformed JSON",
        ),
        (
            '[{"pattern": "scan", "severity": "low", "observed_at": "1900-01-01T00:00:00Z"}]',
            "evidence[0]: observed_at must be in the years 1970 to 9999",
        ),
    ],
)
async def test_invalid_logs_return_the_conservative_fallback(log: str, message: str) -> None:
    """Invalid input never raises: status ANALYSIS_ERROR, a readable error, score 0.5, medium."""
    result = await analyze_risk_patterns(log)
    assert result["status"] == "ANALYSIS_ERROR"
    assert result["error_type"] == "validation_error"
    assert message in result["error"]
    assert result["risk_score"] == 0.5
    assert result["risk_level"] == "medium"
    assert result["confidence"] == 0.0
    assert result["contributions"] == {"fallback": 0.5}
    assert set(result) == {*KEYS, "error_type", "error"}


async def test_a_non_string_log_returns_the_fallback() -> None:
    """Passing something other than a string is reported, not raised."""
    result = await analyze_risk_patterns(b"[]")  # type: ignore[arg-type] # the wrong type is the point
    assert result["status"] == "ANALYSIS_ERROR"
    assert "must be a JSON string, got bytes" in result["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["pattern", "severity", "confidence", "observed_at", "evidence", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
async def test_arbitrary_input_never_raises(log: str) -> None:
    """Whatever the text, the facade answers with ANALYSIS or ANALYSIS_ERROR."""
    result = await analyze_risk_patterns(log)
    assert result["status"] in {"ANALYSIS", "ANALYSIS_ERROR"}
    assert 0.0 <= result["risk_score"] <= 1.0


EVENTS = [
    {"id": "e1", "source": "auth-service", "subject": "user-42", "tenant": "acme",
     "time": "2026-11-29T08:00:00Z",
     "data": {"pattern": "failed_login_burst", "severity": "high", "confidence": 0.9}},
    {"id": "e2", "source": "geo-ip", "subject": "user-42", "tenant": "acme",
     "time": "2026-11-29T08:05:00Z",
     "data": {"pattern": "impossible_travel", "severity": "critical"}},
]  # fmt: skip


async def test_evidence_events_as_published_are_analysed() -> None:
    """CloudEvents-form evidence (what riskpipe publish reads) is scored at the envelope time."""
    lines = "\n".join(json.dumps(event) for event in EVENTS)
    result = await analyze_risk_patterns(lines)
    assert result["status"] == "ANALYSIS"
    # 0.54 decayed over 5 minutes + 1.0 + 1.0 (amplification) + 0.25 (diversity)
    raw = 0.6 * 0.9 * 2 ** (-300 / 86_400) + 2.25
    assert result["risk_score"] == pytest.approx(1 - 2**-raw)
    assert result["risk_level"] == "critical"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": "user-7"}, "the log is about 2 entities (acme/user-42, acme/user-7)"),
        ({"type": "riskpipe.risk.assessed.v1"}, "evidence[1].type: Input should be"),
        ({"data": {"pattern": "scan"}}, "evidence[1].data.severity: Field required"),
        ({"time": "yesterday"}, "evidence[1].time: Input should be a valid datetime"),
        ({"extra": 1}, "evidence[1].extra: Extra inputs are not permitted"),
    ],
)
async def test_invalid_evidence_events_are_reported(
    change: dict[str, object], message: str
) -> None:
    """Mixed entities, other event types and bad envelopes or data give the fallback."""
    log = json.dumps([EVENTS[0], {**EVENTS[1], **change}])
    result = await analyze_risk_patterns(log)
    assert result["status"] == "ANALYSIS_ERROR"
    assert message in result["error"]


def _log_nesting(depth: int) -> str:
    """A one-entry log whose JSON nests ``depth`` levels: an attribute of nested arrays."""
    value: object = 1
    for _ in range(depth - 4):  # under the wrapper, the evidence array, the entry, its attributes
        value = [value]
    entry = {"pattern": "scan", "severity": "low", "observed_at": "2024-05-01T00:00:00Z"}
    return json.dumps({"evidence": [{**entry, "attributes": {"a": value}}]})


async def test_a_log_at_the_nesting_limit_is_parsed_and_one_past_it_is_refused() -> None:
    """16 levels reach validation (the attribute is refused); 17 are refused for their depth."""
    at_limit = await analyze_risk_patterns(_log_nesting(MAX_LOG_DEPTH))
    assert "evidence[0].attributes.a" in at_limit["error"]
    past = await analyze_risk_patterns(_log_nesting(MAX_LOG_DEPTH + 1))
    assert "nests too deeply: 17 levels, the limit is 16" in past["error"]


@pytest.mark.parametrize("depth", [400, 1000, 5000, 100_000])
async def test_deep_logs_are_refused_by_count_on_every_interpreter(depth: int) -> None:
    """However deep, a log is refused by its depth, never by the interpreter's recursion limit."""
    result = await analyze_risk_patterns("[" * depth + "]" * depth)
    assert result["status"] == "ANALYSIS_ERROR"
    assert f"nests too deeply: {depth} levels, the limit is 16" in result["error"]
