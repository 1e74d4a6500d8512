"""``riskpipe chaos`` as CI runs it: a minute of every fault, on one node and on a cluster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import riskpipe

from riskpipe.chaos import APPEND, FAULT, INVARIANTS, PROBE, FinalState, check, read_history
from riskpipe.chaos._harness import _FORBIDDEN

AUTH = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


@pytest.mark.slow
@pytest.mark.timeout(660)  # the run itself is bounded at 600 s; on a loaded machine it takes > 120
@pytest.mark.parametrize("nodes", ["1", "3"])
def test_a_minute_of_mixed_faults_violates_no_invariant(nodes: str, tmp_path: Path) -> None:
    """Seeded, so a failure here can be run again exactly (``--seed 1``).

    Every invariant is checked, the faults really happened (several kinds,
    each healed), the load went on through them, and the history kept with
    ``--keep`` holds each append and fault the result counts.
    """
    keep = tmp_path / "run"
    done = riskpipe(
        "chaos", "--scenario", "mixed", "--seconds", "60", "--seed", "1", "--nodes", nodes,
        "--json", "--keep", str(keep),
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["violations"] == []
    assert result["invariants"] == list(INVARIANTS)
    assert result["evidence"] > 1_000
    producer_faults = ("duplicate", "poison", "transient")
    process_faults = {k: v for k, v in result["faults"].items() if k not in producer_faults}
    assert len(process_faults) >= 2, result["faults"]
    assert result["faults"]["duplicate"] > 0
    assert result["faults"]["poison"] > 0
    assert result["faults"]["transient"] > 0
    assert result["recoveries"], "no recovery was measured after any heal"
    ops = read_history(keep / "history.jsonl")
    assert sum(1 for op in ops if op.op == FAULT) == sum(process_faults.values())
    acknowledged = sum(1 for op in ops if op.op == APPEND and op.type == "ok")
    assert acknowledged == result["appends"]["ok"]
    # the run logged in with the deployment's users: a producer was denied what it must not do
    denied = {
        op.value["probe"]
        for op in ops
        if op.op == PROBE and op.type == "ok" and op.value["how"].startswith("permission denied")
    }
    assert denied & set(_FORBIDDEN), [op for op in ops if op.op == PROBE]
    # kept: the servers' logs, and the final streams, enough to check the run again
    logs = ["nats.log"] if nodes == "1" else ["n1.log", "n2.log", "n3.log"]
    assert all("Server is ready" in (keep / "logs" / log).read_text() for log in logs)
    assert check(ops, FinalState.load(keep / "final")).ok
    assert result["headline"].startswith("1 node" if nodes == "1" else "3 nodes R3")
    assert "0 of 10 invariants violated" in result["headline"]


def test_a_kept_directory_must_be_empty(tmp_path: Path) -> None:
    """Another run's history is never mixed into this one's."""
    (tmp_path / "history.jsonl").write_text("{}\n")
    done = riskpipe("chaos", "--seconds", "5", "--keep", str(tmp_path))
    assert done.returncode == 2
    assert "is not empty" in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scenario", "meteor"], "'meteor' is not one of"),
        (["--seconds", "1"], "1.0 is not in the range 5<=x<=86400"),
        (["--nodes", "2"], "'2' is not one of"),
        (["--scenario", "rolling-restart"], "rolling-restart needs --nodes 3"),
        (["--auth", str(AUTH), "--no-auth"], "give --auth or --no-auth, not both"),
        (["--auth", "no-such.conf"], "'no-such.conf' does not exist"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(args: list[str], words: str) -> None:
    """A typo costs nothing: no server or worker is started for it."""
    done = riskpipe("chaos", *args)
    assert done.returncode == 2
    assert words in done.stderr


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _fault_under_way(history: Path) -> bool:
    """Whether the last fault in the kept history has not been healed yet."""
    under_way = False
    with contextlib.suppress(OSError):
        for line in history.read_text().splitlines():
            with contextlib.suppress(ValueError):
                op = json.loads(line)
                if op.get("process") == "nemesis":
                    under_way = op.get("op") == FAULT
    return under_way


@pytest.mark.parametrize("scenario", ["pause-server", "partition-worker"])
def test_sigterm_stops_the_run_with_its_workers_and_servers(scenario: str, tmp_path: Path) -> None:
    """Stopped mid-fault, as a CI job's timeout would: exit 143 soon, and nothing left.

    The signal comes while a server is frozen or a worker cut off: the run
    must let them reach each other again before it closes connections that
    drain, and stop its workers together, or it takes a minute and more.
    """
    keep = tmp_path / "run"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RISKPIPE_")}
    with (tmp_path / "chaos.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskpipe", "chaos", "--scenario", scenario,
             "--seconds", "120", "--keep", str(keep)],
            env=clean,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 100
        history = keep / "history.jsonl"
        while time.monotonic() < deadline and not _fault_under_way(history):
            time.sleep(0.1)
        assert _fault_under_way(history), "a fault began within 100 s"
        children = _children(proc.pid)
        assert len(children) >= 3, "the server and two workers run"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM  # about 1 s; 25-45 s before
        left = {pid for pid in children if _running(pid)}
        assert not left, f"left running: {left}"
    finally:
        for pid in [proc.pid, *children]:  # whatever the outcome, nothing of it stays
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
