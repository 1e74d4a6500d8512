"""The audit commands as a user runs them: replay, what-if, explain, export, bench replay."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import signal
import threading
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from rich.console import Console
from support.pipeline import run_worker

from eventstore import CloudEvent, EventStore
from projections.audit._replay import _Replay
from riskpipe.cli import _audit, main
from riskpipe.demo import POISON, demo_evidence
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import RawMessage
    from riskpipe.server import NatsServer


async def _pipeline(url: str, *, forge: bool = False) -> None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.provision()
        await store.append_many(demo_evidence(random.Random(5), events=120))  # noqa: S311 - sample data
        for n, (tenant, entity, payload) in enumerate(POISON):
            await store.append_unchecked("evidence", tenant, entity, payload, msg_id=f"poison:{n}")
        await run_worker(store, url)
        if forge:
            await _forge(store)
    finally:
        await store.close()


async def _forge(store: EventStore) -> None:
    """Append a copy of user-carol's last assessment with a raised score."""
    last = await store.last(store.config.subject("risk", "acme", "user-carol"))
    assert last is not None
    assert last.event is not None
    data = dict(last.event.data or {})
    data["assessment"] = {**data["assessment"], "score": 0.99}  # type: ignore[dict-item]
    forged = last.event.model_copy(update={"id": "forged", "data": data})
    await store.append(CloudEvent.model_validate(forged.model_dump()))


@pytest.fixture
def cli(nats_server: NatsServer) -> CliRunner:
    """A CLI runner pointed at a fresh server, quiet logs."""
    return CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})


def test_replay_reports_ok_and_writes_the_json_report(
    cli: CliRunner, nats_server: NatsServer, tmp_path: Path
) -> None:
    """A clean run exits 0; --json prints one document and --report writes the same one."""
    asyncio.run(_pipeline(nats_server.url))
    text = cli.invoke(main, ["replay"])
    assert text.exit_code == 0, text.output
    assert "checked=120 identical=120" in text.stdout
    assert text.stdout.rstrip().endswith(": OK")
    report = tmp_path / "report.json"
    result = cli.invoke(main, ["replay", "--json", "--report", str(report)])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["summary"]["identical"] == 120
    assert document["summary"]["dead_lettered"] == 4
    assert json.loads(report.read_text()) == document
    assert result.stderr == "", "no progress bar when stderr is not a terminal"


def test_replay_of_a_tampered_log_exits_non_zero(cli: CliRunner, nats_server: NatsServer) -> None:
    """A forged assessment makes replay exit 1 and name it in the report."""
    asyncio.run(_pipeline(nats_server.url, forge=True))
    result = cli.invoke(main, ["replay", "--tenant", "acme", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    [finding] = document["findings"]
    assert (finding["kind"], finding["entity"]) == ("extra", "user-carol")
    text = cli.invoke(main, ["replay", "--tenant", "acme", "--entity", "user-carol"])
    assert text.exit_code == 1
    assert "FAILED (1 finding(s))" in text.stdout


def test_what_if_prints_level_changes(
    cli: CliRunner, nats_server: NatsServer, tmp_path: Path
) -> None:
    """--config re-scores history and prints the upgrades, exiting 0."""
    asyncio.run(_pipeline(nats_server.url))
    config = tmp_path / "lower.toml"
    config.write_text("[thresholds]\nmedium = 0.1\nhigh = 0.2\ncritical = 0.3\n")
    result = cli.invoke(main, ["replay", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.stdout)["level_changes"]
    assert changes["upgrades"] > 0
    assert changes["downgrades"] == 0
    assert changes["entities_affected"]
    text = cli.invoke(main, ["replay", "--config", str(config)])
    assert "what-if level changes" in text.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nmedium = 0.9\n")
    refused = cli.invoke(main, ["replay", "--config", str(bad)])
    assert refused.exit_code == 1
    assert "thresholds" in refused.output


def test_replay_in_several_processes_reports_the_same(
    cli: CliRunner, nats_server: NatsServer
) -> None:
    """--jobs 2 replays in two processes, says so, and finds what one process finds."""
    asyncio.run(_pipeline(nats_server.url, forge=True))
    alone = cli.invoke(main, ["replay", "--jobs", "1", "--json"])
    parts = cli.invoke(main, ["replay", "--jobs", "2", "--json"])
    assert (alone.exit_code, parts.exit_code) == (1, 1)
    one, two = json.loads(alone.stdout), json.loads(parts.stdout)
    assert (one.pop("jobs"), two.pop("jobs")) == (1, 2)
    del one["elapsed_seconds"], two["elapsed_seconds"]
    assert two == one
    text = cli.invoke(main, ["replay", "--jobs", "2"])
    assert ", 2 processes" in text.stdout
    assert cli.invoke(main, ["replay", "--jobs", "0"]).exit_code == 2


def test_replay_whose_part_dies_says_so_without_a_report(
    cli: CliRunner, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay process killed mid-way: exit 1, one line naming it, no report printed."""
    asyncio.run(_pipeline(nats_server.url))
    parent, step = os.getpid(), _Replay._evidence  # noqa: SLF001 - the step to break

    async def dying(self: _Replay, raw: RawMessage) -> None:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        await step(self, raw)

    monkeypatch.setattr(_Replay, "_evidence", dying)
    result = cli.invoke(main, ["replay", "--jobs", "2", "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "replay part 1 ended without a result (exit code -9)" in result.stderr
    assert "--jobs 1" in result.stderr


def test_replay_refuses_contradictory_bounds(cli: CliRunner) -> None:
    """Two starts, two ends, or an entity without its tenant are usage errors."""
    for args in (
        ["--from-seq", "2", "--since", "2026-01-01"],
        ["--until-seq", "2", "--until", "2026-01-01"],
        ["--entity", "e1"],
    ):
        result = cli.invoke(main, ["replay", *args])
        assert result.exit_code == 2, args


def test_explain_shows_the_level_at_a_sequence(cli: CliRunner, nats_server: NatsServer) -> None:
    """`explain --seq` prints the timeline up to it; --json gives the current assessment."""
    asyncio.run(_pipeline(nats_server.url))
    args = ["explain", "--tenant", "acme", "--entity", "user-carol"]
    whole = json.loads(cli.invoke(main, [*args, "--json"]).stdout)
    second = whole["timeline"][1]
    cut = cli.invoke(main, [*args, "--seq", str(second["sequence"]), "--json"])
    assert cut.exit_code == 0
    document = json.loads(cut.stdout)
    assert len(document["timeline"]) == 2
    assert document["current"]["level"] == second["assessment"]["level"]
    text = cli.invoke(main, args)
    assert text.exit_code == 0
    assert "timeline" in text.stdout
    both = cli.invoke(main, [*args, "--seq", "3", "--at", "2026-01-01T00:00:00Z"])
    assert both.exit_code == 2


def test_export_writes_csv_rows(cli: CliRunner, nats_server: NatsServer, tmp_path: Path) -> None:
    """`export` writes one CSV row per evidence of the tenant, with a header."""
    asyncio.run(_pipeline(nats_server.url))
    out = tmp_path / "globex.csv"
    result = cli.invoke(
        main, ["export", "--tenant", "globex", "--format", "csv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as src:
        rows = list(csv.DictReader(src))
    assert f"exported {len(rows)} row(s)" in result.stdout
    assert {row["tenant"] for row in rows} == {"globex"}
    assert {row["outcome"] for row in rows} == {"assessed", "dead_lettered"}


def test_bench_replay_prints_both_rates_and_the_ratio() -> None:
    """`bench replay` measures replay and a raw read of the same log and prints the ratio."""
    result = CliRunner(env={"RISKPIPE_LOG_LEVEL": "error"}).invoke(
        main, ["bench", "replay", "--events", "300", "--entities", "20", "--runs", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["replay_per_s"] > 0
    assert figures["raw_per_s"] > 0
    assert figures["store_read_per_s"] > 0
    assert figures["ratio"] == pytest.approx(
        figures["replay_per_s"] / figures["raw_per_s"], rel=0.01
    )
    assert figures["replay_cpu_us"] > 0, "CPU per event is quoted beside the rate"
    assert figures["raw_cpu_us"] > 0


def test_the_progress_bar_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the replay's bar is drawn without a thread, so a replay in parts forks none."""
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(_audit, "err_console", lambda: terminal)
    before = set(threading.enumerate())
    with _audit._progress() as progress:  # noqa: SLF001 - the bar is the unit under test
        assert progress is not None
        assert set(threading.enumerate()) == before
        progress(5, 10)
        progress(10, 10)
        assert "10/10" in screen.getvalue()
