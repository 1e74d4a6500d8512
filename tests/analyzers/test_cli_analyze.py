"""``riskpipe analyze`` and ``riskpipe bench analyze`` through click's CliRunner."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from click.testing import CliRunner
from support.events import SAMPLE_LOG as LOG

from analyzers import analyze_risk_patterns
from riskpipe.cli import main

if TYPE_CHECKING:
    from pathlib import Path


def write_log(tmp_path: Path, text: str, name: str = "log.json") -> Path:
    """Write ``text`` to a file under ``tmp_path``."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_log_file_prints_the_assessment_table(tmp_path: Path) -> None:
    """The table shows level, score, confidence, top contributions and recommendations."""
    result = CliRunner().invoke(main, ["analyze", str(write_log(tmp_path, json.dumps(LOG)))])
    assert result.exit_code == 0, result.output
    for text in (
        "critical (was medium)",
        "0.8750",
        "0.7584",
        "critical_amplification",
        "evidence:malware_detected",
        "Escalate to the on-call analyst",
    ):
        assert text in result.stdout


async def test_json_output_is_the_facade_result(tmp_path: Path) -> None:
    """``--json`` prints exactly what analyze_risk_patterns returns for the same log."""
    text = json.dumps(LOG)
    result = CliRunner().invoke(main, ["analyze", "--json", str(write_log(tmp_path, text))])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == await analyze_risk_patterns(text)


def test_json_lines_are_read_from_stdin() -> None:
    """``-`` reads JSON lines from standard input."""
    lines = "\n".join(json.dumps(item) for item in LOG)
    result = CliRunner().invoke(main, ["analyze", "--json", "-"], input=lines)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["risk_level"] == "critical"


def test_invalid_input_exits_1_with_the_error(tmp_path: Path) -> None:
    """A bad entry exits with status 1 and names the entry on stderr."""
    bad = write_log(tmp_path, '[{"pattern": "scan", "severity": "huge"}]')
    result = CliRunner().invoke(main, ["analyze", str(bad)])
    assert result.exit_code == 1
    assert "evidence[0].severity" in result.stderr
    assert result.stdout == ""


def test_invalid_input_with_json_prints_the_fallback_object() -> None:
    """With ``--json`` an invalid log prints the fallback object and exits with status 1."""
    result = CliRunner().invoke(main, ["analyze", "--json", "-"], input="[]")
    assert result.exit_code == 1
    fallback = json.loads(result.stdout)
    assert fallback["status"] == "ANALYSIS_ERROR"
    assert fallback["error_type"] == "validation_error"
    assert fallback["error"] == "the evidence log is empty"
    assert (fallback["risk_score"], fallback["risk_level"], fallback["confidence"]) == (
        0.5,
        "medium",
        0.0,
    )


def test_a_log_that_is_not_utf8_exits_1(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported as invalid input."""
    path = tmp_path / "log.json"
    path.write_bytes(b'[{"pattern": "\xff"}]')
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 1
    assert "not valid UTF-8" in result.stderr


def test_a_custom_config_changes_the_result(tmp_path: Path) -> None:
    """``--config`` scores with the given file: a stricter critical threshold lowers the level."""
    config = write_log(
        tmp_path, "[thresholds]\nmedium = 0.3\nhigh = 0.6\ncritical = 0.9\n", "strict.toml"
    )
    log = write_log(tmp_path, json.dumps(LOG))
    result = CliRunner().invoke(main, ["analyze", "--json", "--config", str(config), str(log)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["risk_level"] == "high"


def test_an_invalid_config_exits_1_naming_the_problem(tmp_path: Path) -> None:
    """A config that fails validation stops the command with status 1 and the reason."""
    config = write_log(tmp_path, "hysteresis_margin: 0.5\n", "bad.yaml")
    log = write_log(tmp_path, json.dumps(LOG))
    result = CliRunner().invoke(main, ["analyze", "--config", str(config), str(log)])
    assert result.exit_code == 1
    assert "hysteresis_margin 0.5 is not narrower" in result.stderr


def test_bench_analyze_reports_the_rate_and_the_target() -> None:
    """The benchmark prints assessments per second of assess and the 50,000/s target."""
    args = ["bench", "analyze", "--evidence", "2000", "--entities", "50", "--runs", "1"]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "assess (pure)" in table.stdout
    assert "50,000/s target" in table.stdout
    figures = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    assert figures["target"] == 50_000
    assert figures["assess_per_s"] > 0
    assert figures["evidence"] == 2000


def test_the_file_riskpipe_publish_reads_can_be_analysed(tmp_path: Path) -> None:
    """A JSONL file of evidence events, as given to riskpipe publish, is scored offline."""
    events = [
        {"id": "e1", "source": "auth-service", "subject": "user-42", "tenant": "acme",
         "time": "2026-11-29T08:00:00Z",
         "data": {"pattern": "failed_login_burst", "severity": "high", "confidence": 0.9}},
        {"id": "e2", "source": "geo-ip", "subject": "user-42", "tenant": "acme",
         "time": "2026-11-29T08:05:00Z",
         "data": {"pattern": "impossible_travel", "severity": "critical"}},
    ]  # fmt: skip
    path = write_log(tmp_path, "\n".join(json.dumps(e) for e in events) + "\n", "ev.jsonl")
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    assert "critical (was medium)" in result.stdout
    assert "risk assessment of 2 evidence" in result.stdout
