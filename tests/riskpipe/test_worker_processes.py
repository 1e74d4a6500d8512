"""``riskpipe worker --processes N``: real worker processes under a real supervisor process."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, process_alive, read_streams

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

FAST = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_DRAIN_TIMEOUT_SECONDS": "5",
}


def _child_pids(proc: WorkerProcess) -> list[int]:
    return [int(e["pid"]) for e in proc.events("supervisor.child_started")]


async def _gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    """The PIDs still alive after ``timeout`` (each is reaped by its parent or by init)."""
    async with asyncio.timeout(timeout):
        while alive := [pid for pid in pids if process_alive(pid)]:  # noqa: ASYNC110 - no event exists for another parent's child
            await asyncio.sleep(0.1)
    return alive


async def test_a_killed_child_is_restarted_and_sigterm_stops_every_child(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A child killed with -9 is replaced; SIGTERM to the supervisor ends all children, exit 0."""
    await store.append(evidence("p1", entity="e1"))
    supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2)
    supervisor.start()
    try:
        await asyncio.to_thread(supervisor.wait_for, "supervisor.child_started", 2)
        killed = _child_pids(supervisor)[0]
        os.kill(killed, signal.SIGKILL)
        await asyncio.to_thread(supervisor.wait_for, "supervisor.child_started", 3)
        exited = supervisor.events("supervisor.child_exited")
        assert [(e["pid"], e["exit"]) for e in exited] == [(killed, "killed by SIGKILL")]
        assert supervisor.stop() == 0
    finally:
        supervisor.kill()
    assert await _gone(_child_pids(supervisor)) == []


async def test_until_idle_with_two_processes_exits_zero_with_every_evidence_assessed_once(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Two supervised workers with --until-idle exit 0 once idle, each evidence assessed once."""
    events = [evidence(f"u{i}", entity=f"e{i % 7}", minute=i) for i in range(60)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2, until_idle=True)
    supervisor.start()
    assert await asyncio.to_thread(supervisor.wait, 60) == 0
    streams = await read_streams(store)
    assert len(streams.evidence) == 60
    check_invariants(streams)


async def test_children_stop_by_themselves_when_the_supervisor_is_killed(
    store: EventStore, nats_server: NatsServer
) -> None:
    """When the supervisor is killed with -9, its children notice they are orphaned and exit."""
    await store.append(evidence("o1", entity="e1"))
    supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2)
    supervisor.start()
    await asyncio.to_thread(supervisor.wait_for, "supervisor.child_started", 2)
    supervisor.kill()
    assert await _gone(_child_pids(supervisor)) == []
