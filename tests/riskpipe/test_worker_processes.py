"""``riskpipe worker --processes N``: real worker processes under a real supervisor process."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, process_alive, read_streams

from eventstore import EventStore
from projections import read_leases
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

FAST = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_DRAIN_TIMEOUT_SECONDS": "5",
}


def _child_pids(proc: WorkerProcess) -> list[int]:
    return [int(e["pid"]) for e in proc.events("supervisor.child_started")]


def _pid_of(member: str) -> int:
    """The process id in a member id (``<host>-<pid>-<suffix>``)."""
    return int(member.split("-")[-2])


def _stopped(pid: int, timeout: float = 10.0) -> bool:
    """Whether ``pid``, sent SIGSTOP, is stopped (not gone, not a zombie that ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in "Tt":
            return True
        if state in "ZX":
            return False
        time.sleep(0.01)
    return False


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


async def _publish(store: EventStore, count: int, entities: int) -> None:
    events = [evidence(f"u{i}", entity=f"e{i % entities}", minute=i) for i in range(count)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]


def _runs_by_partition(lines: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Per consumer, the runner starts and stops in log order, as (event, member)."""
    runs: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for line in lines:
        if line.get("event") in ("projection.started", "projection.stopped"):
            runs[line["consumer"]].append((line["event"], line["member"]))
    return runs


def _overlapping(runs: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
    """The consumers a runner started for while another process's runner of it still ran.

    A process logs its runner's stop before it deletes the lease, and the next
    owner logs its start after creating the lease, so in the supervisor's
    stderr (one pipe for every child) the runs of one partition never
    interleave unless two processes ran it at once.
    """
    overlapping = {}
    for consumer, events in runs.items():
        running: set[str] = set()
        for event, member in events:
            if event == "projection.started":
                if running - {member}:
                    overlapping[consumer] = events
                running.add(member)
            else:
                running.discard(member)
    return overlapping


async def test_until_idle_with_two_processes_shares_the_partitions_and_exits_zero(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Two supervised batch workers split the partitions by leases: both assess, none twice.

    Each partition is run by one process at a time (a batch run of one
    process per child would run all sixteen in both at once), each process
    assesses some of the evidence, together exactly all of it, and both exit
    0 once every partition is drained.
    """
    await _publish(store, 2_000, entities=200)
    supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2, until_idle=True)
    supervisor.start(wait=False)
    assert await asyncio.to_thread(supervisor.wait, 120) == 0
    streams = await read_streams(store)
    assert len(streams.evidence) == 2_000
    check_invariants(streams)
    assert sum(len(a) for a in streams.assessments.values()) == 2_000

    drained = supervisor.events("worker.drained")
    assert len(drained) == 2, "each child logs what it did once every partition is drained"
    assessed = [line["outcomes"].get("assessed", 0) for line in drained]
    assert all(n > 0 for n in assessed), f"a child assessed nothing: {assessed}"
    assert sum(assessed) == 2_000, f"assessed {assessed}: some evidence twice"
    assert sorted(_pid_of(line["member"]) for line in drained) == sorted(_child_pids(supervisor))
    runs = _runs_by_partition(supervisor.lines)
    assert {c for c in runs if c.startswith("risk-")} == {f"risk-{p}" for p in range(16)}
    assert "review-0" in runs, "the review projection ran after the risk projection"
    assert _overlapping(runs) == {}, "two processes ran one partition at once"
    assert not supervisor.events("projection.conflict")


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


async def test_a_child_killed_during_a_batch_run_is_restarted_and_the_run_still_ends_zero(
    nats_server: NatsServer,
) -> None:
    """A child killed with -9 mid-run is restarted, and every evidence is still assessed once.

    Its leases expire (a 3 s TTL here); the surviving and the restarted child
    take its partitions over and run them until every partition is drained.
    """
    config = topology_config(lease_ttl=timedelta(seconds=3))
    store = await EventStore.connect(nats_server.url, schemas=build_schemas(), config=config)
    async with store:
        await store.provision()
        await _publish(store, 2_000, entities=200)
        supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2, until_idle=True)
        supervisor.start(wait=False)
        try:
            started = await asyncio.to_thread(supervisor.wait_for, "projection.started")
            victim = _pid_of(started[0]["member"])
            # frozen first, so that what it had done when it was killed is known
            os.kill(victim, signal.SIGSTOP)
            assert await asyncio.to_thread(_stopped, victim), (
                f"it did not stop (ended before the kill?): {supervisor.lines[-15:]}"
            )
            await asyncio.sleep(0.2)  # what it wrote before it froze is read
            early = [
                e for e in supervisor.events("worker.drained") if victim == _pid_of(e["member"])
            ]
            assert early == [], "it was not killed mid-run: it had drained already"
            os.kill(victim, signal.SIGKILL)
            code = await asyncio.to_thread(supervisor.wait, 120)
        finally:
            supervisor.kill()
        assert code == 0
        exited = supervisor.events("supervisor.child_exited")
        tail = "\n".join(str(line) for line in supervisor.lines[-20:])
        assert [(e["pid"], e["exit"]) for e in exited] == [(victim, "killed by SIGKILL")], tail
        assert len(_child_pids(supervisor)) == 3, "the killed child was started again"
        drained = supervisor.events("worker.drained")
        assert victim not in {_pid_of(line["member"]) for line in drained}
        assert len(drained) == 2, "the surviving and the restarted child both saw it drained"
        streams = await read_streams(store)
        assert len(streams.evidence) == 2_000
        check_invariants(streams)
        assert sum(len(a) for a in streams.assessments.values()) == 2_000
        left = await read_leases(store, "risk")
        assert all(_pid_of(r.owner) == victim for r in left.values()), "the others handed over"


async def test_a_batch_run_of_two_processes_counts_empty_partitions_as_drained(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Evidence of one entity fills one partition of sixteen: both children still exit 0."""
    await _publish(store, 30, entities=1)
    supervisor = WorkerProcess(nats_server.url, env=FAST, processes=2, until_idle=True)
    supervisor.start(wait=False)
    assert await asyncio.to_thread(supervisor.wait, 60) == 0
    check_invariants(await read_streams(store))
    assessed = [line["outcomes"].get("assessed", 0) for line in supervisor.events("worker.drained")]
    assert len(assessed) == 2
    assert sum(assessed) == 30
