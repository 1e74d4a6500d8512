"""Commands against a server where `riskpipe init` never ran: a clear failure, never "OK"."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from support.events import evidence_line

from riskpipe.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsServer

pytestmark = pytest.mark.usefixtures("logging_restored")

COMMANDS = [
    ["replay"],
    ["replay", "--json"],
    ["replay", "--tenant", "t1", "--entity", "e1", "--jobs", "1"],
    ["status"],
    ["status", "--json"],
    ["explain", "--tenant", "t1", "--entity", "e1"],
    ["events", "--tenant", "t1", "--entity", "e1"],
    ["assessments", "--tenant", "t1", "--entity", "e1"],
    ["dlq", "list"],
    ["dlq", "show", "1"],
    ["dlq", "replay", "--all", "--reason", "test"],
]


@pytest.fixture
def cli(nats_server: NatsServer) -> CliRunner:
    """A CLI runner pointed at a fresh, unprovisioned server."""
    return CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_fresh_server_is_reported_as_not_provisioned(cli: CliRunner, args: list[str]) -> None:
    """Each command that uses the log exits 1 with "not provisioned" and the command to run."""
    result = cli.invoke(main, args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: not provisioned: ")
    assert "riskpipe init" in line
    assert "OK" not in result.stdout


def test_publish_and_export_to_a_fresh_server_fail_clearly(cli: CliRunner, tmp_path: Path) -> None:
    """Publish and export refuse a fresh server the same way, and write nothing."""
    source = tmp_path / "ev.jsonl"
    source.write_text(evidence_line("x1") + "\n")
    out = tmp_path / "out.jsonl"
    for args in (
        ["publish", str(source)],
        ["export", "--tenant", "t1", "--format", "jsonl", "--out", str(out)],
    ):
        result = cli.invoke(main, args)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: not provisioned: ")
    assert not out.exists()


def test_after_init_an_empty_log_replays_ok(cli: CliRunner) -> None:
    """Once provisioned, a replay of an empty log succeeds: the check costs nothing later."""
    assert cli.invoke(main, ["init"]).exit_code == 0
    result = cli.invoke(main, ["replay"])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(": OK")


def test_init_makes_the_lease_bucket_then_finds_it(cli: CliRunner) -> None:
    """Init creates rp-leases (the workers' partition leases), then finds it as made."""
    for verb in ("created", "found"):
        result = cli.invoke(main, ["init"])
        assert result.exit_code == 0, result.output
        [line] = [x for x in result.stdout.splitlines() if "KV_rp-leases" in x]
        assert line == f"{verb:<8} KV_rp-leases"
