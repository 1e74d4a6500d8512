"""Appends on a 3-node R3 cluster while a node, or a stream's leader, is killed with -9."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from support.events import evidence

from eventstore import AppendResult, EventStore
from eventstore.errors import TransientStoreError
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from riskpipe.server import NatsCluster, NatsServer


async def _leader(store: EventStore, cluster: NatsCluster, stream: str) -> NatsServer:
    info = await store.client.api(f"STREAM.INFO.{stream}")
    return cluster.node_named(info["cluster"]["leader"])


async def _connect(url: str, **config: object) -> EventStore:
    return await EventStore.connect(
        url, schemas=build_schemas(), config=topology_config(replicas=3, **config)
    )


class _Stored(NamedTuple):
    """A caller's own result, as ``append_many(result=...)`` makes it."""

    sequence: int
    duplicate: bool


def _stored(_stream: str, _subject: str, sequence: int, duplicate: bool) -> _Stored:  # noqa: FBT001
    return _Stored(sequence, duplicate)


@pytest.mark.parametrize("results_of", ["store", "caller"])
async def test_appends_ride_out_the_evidence_leader_being_killed(
    nats_cluster: NatsCluster, cluster_store: EventStore, results_of: str
) -> None:
    """Every append made while the evidence stream elects a new leader is stored, once.

    With ``result=``, the appends retried after the election have the
    caller's kind of result too, not the store's.
    """
    (await _leader(cluster_store, nats_cluster, "EVIDENCE")).kill()
    events = [evidence(f"r{i}", entity=f"e{i % 7}", minute=i) for i in range(200)]
    async with asyncio.timeout(60):
        if results_of == "caller":
            results: list[Any] = await cluster_store.append_many(events, result=_stored)
        else:
            results = await cluster_store.append_many(events)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert {type(r) for r in results} == {_Stored if results_of == "caller" else AppendResult}
    assert len({r.sequence for r in results}) == 200
    assert await cluster_store.count("EVIDENCE", "rp.evidence.>") == 200


async def test_the_election_window_is_what_outlasts_an_election(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Without an election window an append fails while no leader can be elected; with it, it lands.

    Two of the three nodes are killed, so no new leader can be elected until
    one of them is back: without that, a fast election could answer the hasty
    append before it gives up.
    """
    leader = await _leader(cluster_store, nats_cluster, "EVIDENCE")
    survivor, second = (node for node in nats_cluster.nodes if node is not leader)
    hasty = await _connect(survivor.url, election_window=timedelta(0))
    patient = await _connect(survivor.url, election_window=timedelta(seconds=60))
    async with hasty, patient:
        leader.kill()
        second.kill()
        with pytest.raises(TransientStoreError):
            await hasty.append(evidence("hasty"))
        appending = asyncio.create_task(patient.append(evidence("patient")))
        await asyncio.sleep(1.0)
        assert not appending.done()  # it waits out the missing leader instead of failing
        await asyncio.to_thread(nats_cluster.restart, second)
        async with asyncio.timeout(60):
            stored = await appending
    assert not stored.duplicate
    assert stored.sequence >= 1


async def test_a_store_given_every_url_moves_to_a_surviving_node(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """Killing the node a store is connected to: it reconnects to another and appends go on."""
    nc = cluster_store.client.nc
    used = nc.connected_url
    assert used is not None
    next(node for node in nats_cluster.nodes if node.port == used.port).kill()
    async with asyncio.timeout(60):
        for i in range(20):
            await cluster_store.append(evidence(f"m{i}", minute=i))
    assert nc.connected_url is not None
    assert nc.connected_url.port != used.port
    assert await cluster_store.count("EVIDENCE", "rp.evidence.>") == 20
