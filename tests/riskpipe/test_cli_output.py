"""What commands print: one rule for --json, human text, ids never cut short."""

from __future__ import annotations

import asyncio
import io
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner
from rich.console import Console
from support.cli import provisioned_with, scored
from support.events import SAMPLE_LOG, evidence_line

from analyzers import AnalyzerConfig
from eventstore import EventStore
from projections.audit import ReplayReport, replay
from projections.learning import propose, read_config_book
from projections.review import Actor
from riskpipe.cli import main
from riskpipe.cli._audit import _entities_table
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.usefixtures("logging_restored")

# The longest entity id a subject allows, with markup-like text in it.
LONG = "user-[bold]-" + "x" * 116
assert len(LONG) == 128


OUTCOME_LINE = json.dumps(
    {
        "specversion": "1.0", "id": "outcome-1", "source": "urn:test",
        "type": "riskpipe.outcome.recorded.v1", "subject": LONG, "tenant": "t1",
        "time": "2026-01-01T00:00:15Z", "data": {"outcome": "chargeback", "positive": True},
    }
)  # fmt: skip


async def _poison(url: str) -> None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.append_unchecked("evidence", "t1", LONG, b"{broken", msg_id="poison:1")
    finally:
        await store.close()


async def _propose_v1(url: str) -> None:
    """Propose the default config as version ``v1`` (for a shadow run and its report)."""
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        book = await read_config_book(store)
        await propose(store, book, AnalyzerConfig(), version="v1", by=Actor(name="ops",
                      role="operator"), clock=lambda: datetime.now(UTC))  # fmt: skip
    finally:
        await store.close()


@pytest.fixture
def cli(nats_server: NatsServer, tmp_path: Path) -> CliRunner:
    """A server with 3 assessed evidence events of an entity with a long id, and 1 dead letter."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})
    severities = ["high", "critical", "low"]
    lines = [
        evidence_line(f"o{i}", entity=LONG, minute=i, severity=s) for i, s in enumerate(severities)
    ]
    provisioned_with(runner, tmp_path, lines)
    asyncio.run(_poison(nats_server.url))
    scored(runner)
    return runner


def _json_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command path under ``group`` that has a --json option."""
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found |= _json_commands(command, path)
        elif any("--json" in p.opts for p in command.params if isinstance(p, click.Option)):
            found.add(path)
    return found


def _one_result(tmp_path: Path, target: str) -> dict[tuple[str, ...], list[str]]:
    """Commands whose --json prints one result: the arguments that run each.

    ``target`` is a second server, the store migrate copies into.
    """
    (tmp_path / "log.json").write_text(json.dumps(SAMPLE_LOG))
    (tmp_path / "again.jsonl").write_text(evidence_line("o0", entity=LONG) + "\n")
    (tmp_path / "tuned.toml").write_text("[severity_weights]\nhigh = 0.7\n")
    small = ["--events", "200", "--entities", "5", "--runs", "1"]
    return {
        ("status",): [],
        ("readmodel", "status"): [],
        ("asyncapi",): [],
        ("publish",): [str(tmp_path / "again.jsonl")],
        ("replay",): ["--jobs", "1"],
        ("migrate",): ["--to", target],
        ("explain",): ["--tenant", "t1", "--entity", LONG],
        ("analyze",): [str(tmp_path / "log.json")],
        ("bench", "analyze"): ["--evidence", "200", "--entities", "5", "--runs", "1"],
        ("bench", "ingest"): small,
        ("bench", "pipeline"): [*small, "--rate", "500", "--latency-events", "50"],
        ("bench", "replay"): small,
        ("bench", "api"): ["--cases", "200", "--requests", "10", "--pipeline-events", "0"],
        ("bench", "learn"): ["--events", "4000", "--outcomes", "200", "--entities", "400"],
        ("chaos",): ["--scenario", "duplicate", "--seconds", "5", "--workers", "1"],
        ("shadow", "report"): ["--version", "v1"],
        # base-0 is proposed and promoted first (see the test): then a rollback returns to it
        ("config", "propose"): [str(tmp_path / "tuned.toml"), "--version", "tuned-1"],
        ("config", "show"): ["tuned-1"],
        ("config", "promote"): ["tuned-1", "--reason", "better recall"],
        ("config", "rollback"): ["--reason", "too many alerts"],
        ("config", "list"): [],
        # the fixture's evidence is at minutes 0, 1, 2; an outcome 15 s after the first
        ("learn",): [
            "--since",
            "2026-01-01T00:00:00Z",
            "--until",
            "2026-01-01T00:10:00Z",
            "--horizon",
            "30s",
            "--cut",
            "2026-01-01T00:01:30Z",
            "--no-report",
            "--version",
            "learned-1",
        ],
    }


# Commands whose --json prints a list: the arguments, and how many items the fixture gives.
LISTS: dict[tuple[str, ...], tuple[list[str], int]] = {
    ("events",): (["--tenant", "t1", "--entity", LONG], 4),
    ("assessments",): (["--tenant", "t1", "--entity", LONG], 3),
    ("dlq", "list"): ([], 1),
    ("review", "list"): (["--status", "all"], 1),
}


@pytest.mark.slow
def test_every_json_output_is_json_lines(cli: CliRunner, tmp_path: Path) -> None:
    """Each --json prints compact JSON objects one per line: one per item, or exactly one."""
    asyncio.run(_propose_v1(cli.env["RISKPIPE_NATS_URL"] or ""))
    shadowed = cli.invoke(main, ["worker", "--until-idle", "--no-http", "--shadow", "v1"])
    assert shadowed.exit_code == 0, shadowed.output
    (tmp_path / "outcome.jsonl").write_text(OUTCOME_LINE + "\n")
    assert cli.invoke(main, ["publish", str(tmp_path / "outcome.jsonl")]).exit_code == 0
    target = NatsServer(data_dir=tmp_path / "target")
    target.start()
    (tmp_path / "base.toml").write_text("")
    for args in (["propose", str(tmp_path / "base.toml"), "--version", "base-0"],
                 ["promote", "base-0", "--reason", "a known start"]):  # fmt: skip
        assert cli.invoke(main, ["config", *args]).exit_code == 0
    try:
        _json_lines(cli, _one_result(tmp_path, target.url))
    finally:
        target.kill()


def _json_lines(cli: CliRunner, one: dict[tuple[str, ...], list[str]]) -> None:
    assert _json_commands(main) == set(one) | set(LISTS), "a --json command is not covered"
    for path, args in [*((p, a) for p, a in one.items()), *((p, a) for p, (a, _) in LISTS.items())]:
        result = cli.invoke(main, [*path, *args, "--json"])
        assert result.exit_code == 0, (path, result.output)
        lines = result.stdout.splitlines()
        assert all(isinstance(json.loads(line), dict) for line in lines), path
        expected = LISTS[path][1] if path in LISTS else 1
        assert len(lines) == expected, (path, result.stdout[:200])


def test_explain_opens_with_human_text(cli: CliRunner) -> None:
    """Explain's heading reads as sentences, not as a Python dict, and its ids are whole."""
    result = cli.invoke(main, ["explain", "--tenant", "t1", "--entity", LONG])
    assert result.exit_code == 0, result.output
    heading = result.stdout.splitlines()[:2]
    assert heading[0] == f"t1/{LONG} as of now"
    assert heading[1] == (
        "4 evidence event(s): 3 assessed, 1 dead-lettered, 0 pending; 2 level change(s)"
    )
    assert not re.search(r"[{}']", "\n".join(heading))
    assert "o0" in result.stdout


def _column(table_text: str, index: int) -> str:
    """The text of one column of a rendered table, its wrapped lines joined."""
    cells = [line.split("│")[index].strip() for line in table_text.splitlines() if "│" in line]
    return "".join(cells)


def test_replay_table_never_cuts_an_entity_id(cli: CliRunner) -> None:
    """The replay table keeps a 128-character entity id whole when not on a terminal."""
    result = cli.invoke(main, ["replay", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert f"t1/{LONG}" in _column(result.stdout, 1)
    assert "…" not in _column(result.stdout, 1)


def test_replay_table_wraps_ids_on_a_narrow_terminal(cli: CliRunner) -> None:
    """On an 80-column terminal the id wraps onto more lines instead of ending in an ellipsis."""

    async def report() -> ReplayReport:
        async with await EventStore.connect(
            cli.env["RISKPIPE_NATS_URL"] or "", schemas=build_schemas(), config=topology_config()
        ) as store:
            return await replay(store, jobs=1)

    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    console.print(_entities_table(asyncio.run(report()), 10))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert f"t1/{LONG}" in _column(text, 1)
