"""``bench pipeline --workers``: worker processes, their CPU and the server's, read from each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from support.cli import riskpipe

from riskpipe.bench import private_server, process_cpu_seconds
from riskpipe.cli._bench_pipeline import (
    PipelineRun,
    WorkerProcesses,
    running_workers,
    wait_settled,
    warm_up,
)
from riskpipe.wiring import private_environment

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"


def test_a_process_cpu_is_read_while_it_runs_and_none_once_it_is_gone() -> None:
    """A busy child shows its CPU from outside; a reaped process has none to read."""
    command = [sys.executable, "-c", SPIN + "input()"]
    child = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        seen = 0.0
        while seen < 0.3 and child.poll() is None:  # the spin is 0.3 s of CPU, then it waits
            seen = process_cpu_seconds(child.pid) or 0.0
        assert seen >= 0.25
    finally:
        child.communicate(b"\n", timeout=30)
    assert process_cpu_seconds(child.pid) is None
    assert (process_cpu_seconds(os.getpid()) or 0.0) > 0


def test_child_processes_on_a_private_server_get_no_credentials() -> None:
    """The user's login and TLS settings are for their server, not the bench's private one."""
    environ = {
        "RISKPIPE_NATS_CREDS": "/secret.creds",
        "riskpipe_nats_password": "hunter2",
        "RISKPIPE_TLS_CA": "/ca.pem",
        "RISKPIPE_NATS_URL": "nats://prod:4222",
        "RISKPIPE_BATCH": "64",
        "PATH": "/bin",
    }
    assert private_environment(environ, "nats://127.0.0.1:5000") == {
        "RISKPIPE_BATCH": "64",
        "PATH": "/bin",
        "RISKPIPE_NATS_URL": "nats://127.0.0.1:5000",
    }


def test_bench_workers_run_the_review_projection_only_when_asked() -> None:
    """The plain loop opens no cases: by default the workers do not either (``--review``)."""
    environ = {"RISKPIPE_REVIEW": "true", "RISKPIPE_BATCH": "64"}
    with private_server() as server:
        plain = WorkerProcesses(server, 1, 0.2)
        reviewing = WorkerProcesses(server, 1, 0.2, review=True)
        try:
            assert plain.environment(environ)["RISKPIPE_REVIEW"] == "false"
            assert reviewing.environment(environ)["RISKPIPE_REVIEW"] == "true"
            assert plain.environment(environ)["RISKPIPE_NATS_URL"] == server.url
            assert plain.environment(environ)["RISKPIPE_BATCH"] == "64"
        finally:
            plain.stop()  # none started: only their log directories to remove
            reviewing.stop()


@pytest.mark.slow
def test_one_and_two_worker_processes_are_measured_with_the_raw_loop_beside_them() -> None:
    """Each count gets its rate, the workers' and the server's CPU, latency, and 2 vs 1."""
    small = ["--events", "400", "--entities", "40", "--runs", "1", "--latency-events", "100"]
    ran = riskpipe("bench", "pipeline", "--workers", "1,2", *small, "--rate", "500", "--json")
    assert ran.returncode == 0, ran.stderr[-2000:]
    figures = json.loads(ran.stdout)
    rows = {row["workers"]: row for row in figures["by_workers"]}
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert row["projection_per_s"] > 0
        assert row["raw_per_s"] > 0
        assert row["workers_cpu_us"] > 0, "the workers' CPU is read from their processes"
        assert row["server_cpu_us"] is not None
        assert row["latency_p99_ms"] >= row["latency_p50_ms"] > 0
    assert rows[1]["speedup"] == 1.0
    expected = rows[2]["projection_per_s"] / rows[1]["projection_per_s"]
    assert rows[2]["speedup"] == pytest.approx(expected, rel=0.01)
    assert figures["scale_target"] == 1.6
    assert figures["review"] is False


def test_worker_counts_must_be_distinct_counts_of_one_or_more() -> None:
    """A bad list is refused before any server starts, with what was wrong."""
    for bad in ("0", "1,1", "two", "1,,2"):
        ran = riskpipe("bench", "pipeline", "--workers", bad)
        assert ran.returncode == 2, bad
        assert "is not a list of distinct process counts" in ran.stderr


async def test_warm_up_gives_every_entity_one_evidence_and_returns_once_all_are_assessed(
    store: EventStore, nats_server: NatsServer
) -> None:
    """The latency run then meets no entity for the first time: each was read and assessed."""
    run = PipelineRun(count=10, entities=7, rate=100, latency_events=10, runs=1)
    with running_workers(nats_server, 1, 0.2) as workers:
        await wait_settled(store, workers)
        await warm_up(store, run, "warm")
        risk = store.config.stream_for("risk")
        assessed = [rec.subject async for rec in store.read_all(stream=risk)]
    assert len(assessed) == 7, "one assessment per entity, all written before warm_up returned"
    assert len(set(assessed)) == 7
