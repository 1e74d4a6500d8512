"""A worker on a 3-node R3 cluster under load while nodes are killed with -9 and rolled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, read_streams

from eventstore.errors import TransientStoreError
from projections import partition_views

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsCluster

CLUSTER_WORKER_ENV = {
    "RISKPIPE_REPLICAS": "3",
    "RISKPIPE_FETCH_TIMEOUT": "0.2",
    # acks sent to a leader that died are lost: redelivered after this, not after 30 s
    "RISKPIPE_ACK_WAIT_SECONDS": "5",
}


async def append_evidence(store: EventStore, prefix: str, count: int) -> None:
    """``count`` evidence events over 20 entities; every one is stored."""
    results = await store.append_many(
        [evidence(f"{prefix}{i}", entity=f"e{i % 20}", minute=i) for i in range(count)]
    )
    assert [r for r in results if isinstance(r, Exception)] == []


async def wait_for_assessments(
    store: EventStore, count: int, workers: list[WorkerProcess], seconds: float = 60
) -> None:
    """Return once the risk stream holds ``count`` assessments; fail as soon as a worker exits."""
    async with asyncio.timeout(seconds):
        while await _assessed(store) < count:
            for worker in workers:
                assert worker.proc is not None
                assert worker.proc.poll() is None, f"a worker exited: {worker.lines[-3:]}"
            await asyncio.sleep(0.2)


async def _assessed(store: EventStore) -> int:
    """How many assessments the risk stream holds; 0 while its leader is being elected."""
    try:
        return await store.count(store.config.stream_for("risk"), "rp.risk.>")
    except TransientStoreError:
        return 0


@pytest.mark.slow
async def test_worker_rides_out_the_election_of_its_consumers_leader(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Killing the consumer's leader: the worker waits for the next one and assesses everything."""
    await append_evidence(cluster_store, "a", 300)
    worker = WorkerProcess(nats_cluster.urls, env=CLUSTER_WORKER_ENV)
    await asyncio.to_thread(worker.start)
    try:
        # the node leading partition 0's consumer (it leads others' too, most likely)
        info = await cluster_store.client.api("CONSUMER.INFO.EVIDENCE.risk-0")
        leader = nats_cluster.node_named(info["cluster"]["leader"])
        leader.kill()
        await append_evidence(cluster_store, "b", 300)
        await asyncio.to_thread(nats_cluster.restart, leader)
        await wait_for_assessments(cluster_store, 600, [worker])
        assert worker.events("projection.fetch_failed"), "the consumer's election went unseen"
    finally:
        code = await asyncio.to_thread(worker.stop)
    assert code == 0
    check_invariants(await read_streams(cluster_store))


@pytest.mark.slow
async def test_a_worker_started_while_the_cluster_has_no_quorum_waits_for_its_leaders(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Started on the one node left of three, its checks at start are retried, not fatal.

    With two nodes down nothing can lead the consumers; the worker retries its
    start-up checks (``worker.start_retry``) within the election window, and
    once the nodes are back it assesses everything and exits 0.
    """
    await append_evidence(cluster_store, "a", 100)
    survivor, *stopped = nats_cluster.nodes
    for node in stopped:
        node.kill()
    env = {**CLUSTER_WORKER_ENV, "RISKPIPE_ELECTION_WINDOW": "2m"}
    worker = WorkerProcess(survivor.url, env=env, until_idle=True)
    worker.start(wait=False)
    try:
        waiting = await asyncio.to_thread(_waiting, worker, 60.0)
        assert worker.proc is not None
        assert worker.proc.poll() is None, "the worker gave up at its first failed check"
        for node in stopped:
            await asyncio.to_thread(nats_cluster.restart, node)
        code = await asyncio.to_thread(worker.wait, 120)
    finally:
        worker.kill()
    assert code == 0, _story(worker)
    if waiting["event"] == "worker.start_retry":
        assert waiting["attempt"] == 1
    assert not worker.events("worker.failed")
    # the restarted nodes may still be electing the leaders of this read's consumer
    streams = await cluster_store.retry_transient(lambda: read_streams(cluster_store))
    assert len(streams.evidence) == 100
    try:
        check_invariants(streams)
    except AssertionError as exc:  # exited 0 with evidence unhandled: how it came to stop
        raise AssertionError(f"{exc}\n{_story(worker)}") from None


_ROUTINE = frozenset({"projection.started", "projection.hosted", "worker.started"})


def _story(worker: WorkerProcess, lines: int = 40) -> str:
    """What a worker said that tells how its run went: warnings, errors, idle checks, stops.

    Its last few lines alone (what a failure used to show) are the shutdown,
    not what led to it.
    """
    told = [
        line
        for line in worker.lines
        if line.get("level") in {"warning", "error", "critical"}
        or "idle" in str(line.get("event"))
        or str(line.get("event")).endswith(("stopped", "drained"))
    ]
    told = [line for line in told if line.get("event") not in _ROUTINE]
    shown = "\n".join(f"  {line}" for line in told[-lines:])
    last = "\n".join(f"  {line}" for line in worker.lines[-5:])
    return f"{len(told)} telling lines, the last {lines}:\n{shown}\nits last lines:\n{last}"


def _waiting(worker: WorkerProcess, timeout: float) -> dict[str, Any]:
    """The first line saying the worker waits for the cluster's leaders.

    Usually its start-up checks are retried (``worker.start_retry``). A
    leader that has not yet noticed it lost its quorum may still answer them,
    and then the fetches wait instead (``projection.fetch_failed``).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in worker.lines:
            if line.get("event") in {"worker.start_retry", "projection.fetch_failed"}:
                return line
        time.sleep(0.1)
    raise AssertionError(f"the worker never waited for leaders: {worker.lines[-5:]}")


@dataclass
class Load:
    """A producer appending evidence steadily until stopped; what it was told."""

    store: EventStore
    acknowledged: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)
    failed: int = 0
    acked_at: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event, per_round: int = 100, pause: float = 0.1) -> None:
        """Append ``per_round`` events over 100 entities, then pause, until ``stop``."""
        n = 0
        while not stop.is_set():
            events = [
                evidence(f"l{n + i}", entity=f"e{(n + i) % 100}", minute=n + i)
                for i in range(per_round)
            ]
            n += per_round
            self.attempted.update(e.id for e in events)
            for event, result in zip(events, await self.store.append_many(events), strict=True):
                if isinstance(result, Exception):
                    self.failed += 1
                else:
                    self.acknowledged.add(event.id)
                    self.acked_at.append(time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await stop.wait()

    def outage_after(self, moment: float) -> float:
        """How long after ``moment`` the first append was acknowledged again."""
        return min(t for t in self.acked_at if t > moment) - moment


async def _drained(store: EventStore) -> bool:
    """Whether every partition's risk consumer has nothing pending or unacknowledged."""
    try:
        views = await partition_views(store, "risk", source="evidence")
    except TransientStoreError:
        return False
    return all(view.info is not None and view.pending == 0 for view in views)


@pytest.mark.slow
async def test_cluster_load_through_a_leader_kill_and_a_rolling_restart(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Under load, the evidence leader killed and restarted, then every node rolled: no loss."""
    worker = WorkerProcess(nats_cluster.urls, env=CLUSTER_WORKER_ENV)
    await asyncio.to_thread(worker.start)
    load, stop = Load(cluster_store), asyncio.Event()
    producing = asyncio.create_task(load.run(stop))
    try:
        await asyncio.sleep(2)  # load before the fault
        info = await cluster_store.client.api("STREAM.INFO.EVIDENCE")
        leader = nats_cluster.node_named(info["cluster"]["leader"])
        killed_at = time.monotonic()
        leader.kill()
        await asyncio.sleep(3)  # down for a while, under load
        await asyncio.to_thread(nats_cluster.restart, leader)
        rolled_at = time.monotonic()
        await asyncio.to_thread(nats_cluster.rolling_restart)
        healed_at = time.monotonic()
        await asyncio.sleep(1)  # load after the last fault
        stop.set()
        await producing
        async with asyncio.timeout(60):
            while not (await _assessed(cluster_store) >= len(load.acknowledged)
                       and await _drained(cluster_store)):  # fmt: skip
                assert worker.proc is not None
                assert worker.proc.poll() is None, f"the worker exited: {worker.lines[-3:]}"
                await asyncio.sleep(0.2)
        recovered = time.monotonic() - healed_at
    finally:
        stop.set()
        await producing
        code = await asyncio.to_thread(worker.stop)
    assert code == 0
    streams = await read_streams(cluster_store)
    stored = {event.id for event in streams.evidence.values() if event is not None}
    assert load.acknowledged <= stored, "acknowledged evidence lost"  # I1
    assert stored <= load.attempted, "evidence nobody appended"  # I2
    assert len(stored) == len(streams.evidence), "evidence stored twice"  # I3
    check_invariants(streams)  # I4 one assessment each, I5 in order per entity
    print(  # noqa: T201 - the measured figures are the test's report
        f"\ncluster load: {len(load.acknowledged)} acknowledged, {load.failed} failed appends;"
        f" appends back {load.outage_after(killed_at):.1f} s after the leader kill;"
        f" rolling restart {healed_at - rolled_at:.1f} s;"
        f" all assessed {recovered:.1f} s after the last fault healed"
    )
