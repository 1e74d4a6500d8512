"""``riskpipe config``: propose, list, show, promote, rollback; refusals append nothing."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest

from analyzers import AnalyzerConfig
from projections.learning import read_config_book
from riskpipe.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import CliRunner

    from eventstore import EventStore

pytestmark = pytest.mark.usefixtures("logging_restored")

TUNED_TOML = """
[severity_weights]
low = 0.05
medium = 0.2
high = 0.7
critical = 1.0
"""


def _json(cli: CliRunner, *args: str) -> dict[str, Any]:
    result = cli.invoke(main, ["config", *args, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    body: dict[str, Any] = json.loads(lines[0])
    return body


def _refused(cli: CliRunner, *args: str, code: int = 1) -> str:
    result = cli.invoke(main, ["config", *args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    return " ".join(lines)


async def _version(store: EventStore) -> int:
    return (await read_config_book(store)).version


def test_propose_promote_show_list_and_rollback_end_to_end(cli: CliRunner, tmp_path: Path) -> None:
    """Each command's --json says what the log now holds; rollback returns to the previous."""
    tuned = tmp_path / "tuned.toml"
    tuned.write_text(TUNED_TOML)
    default = tmp_path / "default.yaml"
    default.write_text("{}\n")
    first = _json(cli, "propose", str(default), "--version", "base-1", "--reason", "defaults")
    assert first["fingerprint"] == AnalyzerConfig().fingerprint()
    assert first["by"] == {"name": "olga", "role": "operator"}
    second = _json(cli, "propose", str(tuned), "--version", "tuned-1", "--by", "ted")
    assert second["by"] == {"name": "ted", "role": "operator"}
    promoted = _json(cli, "promote", "base-1", "--reason", "a known start")
    assert (promoted["kind"], promoted["previous"], promoted["effective_from"]) == (
        "promotion",
        None,
        1,
    )
    promoted = _json(cli, "promote", "tuned-1", "--reason", "better recall", "--by", "ted")
    assert (promoted["version"], promoted["previous"]) == ("tuned-1", "base-1")
    shown = _json(cli, "show", "tuned-1")
    assert shown["live"] is True
    assert shown["config"]["severity_weights"]["high"] == 0.7
    assert [p["reason"] for p in shown["promotions"]] == ["better recall"]
    back = _json(cli, "rollback", "--reason", "too many alerts")
    assert (back["version"], back["kind"], back["previous"]) == ("base-1", "rollback", "tuned-1")
    listed = _json(cli, "list")
    assert listed["live"]["version"] == "base-1"
    assert [(v["version"], v["live"]) for v in listed["versions"]] == [
        ("base-1", True),
        ("tuned-1", False),
    ]
    assert [(p["version"], p["kind"]) for p in listed["promotions"]] == [
        ("base-1", "promotion"),
        ("tuned-1", "promotion"),
        ("base-1", "rollback"),
    ]
    assert listed["log_version"] == 8  # 2 proposals; each promotion is started, then recorded
    table = cli.invoke(main, ["config", "list"])
    assert table.exit_code == 0, table.output
    assert "live: base-1 since evidence 1" in table.stdout
    assert "too many alerts" in table.stdout


async def test_bad_inputs_are_refused_clearly_and_append_nothing(
    cli: CliRunner, store: EventStore, tmp_path: Path
) -> None:
    """Unknown version, invalid file, nothing to roll back, the live version: nothing appended."""
    loop = asyncio.get_running_loop()

    async def invoke(*args: str, code: int = 1) -> str:
        return await loop.run_in_executor(None, lambda: _refused(cli, *args, code=code))

    async def ok(*args: str) -> dict[str, Any]:
        return await loop.run_in_executor(None, lambda: _json(cli, *args))

    said = await invoke("promote", "nope-1", "--reason", "x")
    assert "no config version 'nope-1' was proposed (known: none yet)" in said
    said = await invoke("rollback", "--reason", "x")
    assert "nothing to roll back: no config version was ever promoted" in said
    bad = tmp_path / "bad.toml"
    bad.write_text("[severity_weights]\nlow = 'much'\n")
    said = await invoke("propose", str(bad), "--version", "bad-1", code=2)
    assert "severity_weights.low" in said
    said = await invoke("propose", str(tmp_path / "missing.toml"), "--version", "m-1", code=2)
    assert "cannot read the file" in said
    said = await invoke("propose", str(bad), "--version", "has.dot", code=2)
    assert "not a version name" in said
    assert await _version(store) == 0
    good = tmp_path / "good.toml"
    good.write_text(TUNED_TOML)
    await ok("propose", str(good), "--version", "tuned-1")
    said = await invoke("propose", str(good), "--version", "tuned-1")
    assert "was proposed already" in said
    await ok("promote", "tuned-1", "--reason", "first")
    assert await _version(store) == 3  # proposed, promotion started, promoted
    said = await invoke("promote", "tuned-1", "--reason", "again")
    assert "config version 'tuned-1' is live already (since evidence 1)" in said
    said = await invoke("rollback", "--reason", "x")
    assert "nothing to roll back to: tuned-1 is the first version promoted" in said
    said = await invoke("promote", "tuned-1", "--reason", "  ", code=2)
    assert "say why" in said
    assert await _version(store) == 3
