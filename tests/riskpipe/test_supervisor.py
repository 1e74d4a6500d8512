"""The supervisor keeps N real child processes running, restarts crashed ones, stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs
from support.pipeline import process_alive

from riskpipe.supervisor import Backoff, Supervisor

if TYPE_CHECKING:
    from pathlib import Path

FAST = Backoff(first=0.05, limit=0.2, healthy_after=60)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = _python("import time\nwhile True: time.sleep(1)")
"""A child that runs until a signal ends it (SIGTERM's default action)."""


async def _pids(
    supervisor: Supervisor, count: int, *, without: set[int] = frozenset()
) -> list[int]:
    """Wait until ``count`` children run, none of them in ``without``."""
    async with asyncio.timeout(20):
        while True:
            supervisor.changed.clear()
            pids = [p for p in supervisor.pids if p not in without]
            if len(pids) >= count:
                return pids
            await supervisor.changed.wait()


def test_backoff_doubles_up_to_its_limit_and_starts_over_after_a_healthy_run() -> None:
    """Quick exits in a row double the wait (capped); a long run resets the count."""
    backoff = Backoff(first=0.5, limit=4.0, healthy_after=30.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.next_count(3, ran_for=1.0) == 4
    assert backoff.next_count(3, ran_for=31.0) == 1


async def test_a_child_killed_with_sigkill_is_started_again_and_logged() -> None:
    """A child killed with SIGKILL is replaced by a new process, and its exit is logged."""
    supervisor = Supervisor(lambda _: SLEEPER, 3, backoff=FAST, grace=5)
    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(supervisor.run(stop))
        first = await _pids(supervisor, 3)
        os.kill(first[1], signal.SIGKILL)
        after = await _pids(supervisor, 3, without={first[1]})
        stop.set()
        assert await running == 0
    assert set(after) - set(first), "a new child replaced the killed one"
    exits = [e for e in logs if e["event"] == "supervisor.child_exited"]
    assert [e["exit"] for e in exits] == ["killed by SIGKILL"]
    assert supervisor.restarts == 1


async def test_stopping_terminates_every_child_and_exits_zero() -> None:
    """On stop every child gets SIGTERM and is gone before run() returns 0."""
    supervisor = Supervisor(lambda _: SLEEPER, 3, backoff=FAST, grace=5)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    pids = await _pids(supervisor, 3)
    stop.set()
    assert await running == 0
    assert not [pid for pid in pids if process_alive(pid)]


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    """A child still running after the grace period is killed, and the run is not clean (1)."""
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    stubborn = ["sh", "-c", f"trap '' TERM; echo ready > {ready}; exec sleep 600"]
    supervisor = Supervisor(lambda _: stubborn, 1, backoff=FAST, grace=0.5)
    stop = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(supervisor.run(stop))
        (pid,) = await _pids(supervisor, 1)
        async with asyncio.timeout(10):  # its trap is set once it wrote to the pipe
            await asyncio.to_thread(ready.read_text)
        stop.set()
        assert await running == 1
    assert not process_alive(pid)
    assert [e["event"] for e in logs if e["event"] == "supervisor.child_killed"]


async def test_until_idle_waits_for_every_child_to_exit_zero_restarting_failures(
    tmp_path: Path,
) -> None:
    """With until_idle, a child exiting 0 is done; one exiting 1 is run again until it exits 0."""
    tries = tmp_path / "tries"
    flaky = _python(
        f"import pathlib, sys\np = pathlib.Path({str(tries)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\np.write_text(str(n + 1))\n"
        "sys.exit(1 if n < 2 else 0)"
    )
    supervisor = Supervisor(
        lambda i: flaky if i == 0 else _python("pass"), 2, backoff=FAST, until_idle=True
    )
    async with asyncio.timeout(20):
        assert await supervisor.run(asyncio.Event()) == 0
    assert tries.read_text() == "3"
    assert supervisor.restarts == 2


def test_no_processes_is_refused() -> None:
    """Zero children is a configuration error, said plainly."""
    with pytest.raises(ValueError, match="at least one process"):
        Supervisor(lambda _: SLEEPER, 0)
