"""A worker on a 3-node R3 cluster while the node leading its consumer is killed with -9."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, read_streams

from eventstore.errors import TransientStoreError

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
        return await store.count(store.config.risk_stream, "rp.risk.>")
    except TransientStoreError:
        return 0


async def test_worker_rides_out_the_election_of_its_consumers_leader(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Killing the consumer's leader: the worker waits for the next one and assesses everything."""
    await append_evidence(cluster_store, "a", 300)
    worker = WorkerProcess(nats_cluster.urls, env=CLUSTER_WORKER_ENV)
    await asyncio.to_thread(worker.start)
    try:
        info = await cluster_store.client.api("CONSUMER.INFO.EVIDENCE.risk")
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
