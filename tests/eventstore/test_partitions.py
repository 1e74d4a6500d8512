"""Evidence partitions: assigned by the server, computed alike by the store, fixed at init."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
import pytest
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker

from eventstore import partition_of
from eventstore.errors import PartitionsMismatchError
from riskpipe.topology import topology_config

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def test_the_store_computes_the_partition_the_server_assigns(store: EventStore) -> None:
    """For 285 entities, odd-looking tokens included, both sides agree on every subject."""
    entities = [f"e{n}" for n in range(280)] + ["a-b_c", "X" * 64, "user:42", "0", "-"]
    tenants = ["t1", "acme", "T-9"]
    nc = store.client.nc
    for n, entity in enumerate(entities):
        await nc.publish(f"rp.evidence.{tenants[n % 3]}.{entity}", b"{}")
    await nc.flush()
    async with asyncio.timeout(10):  # core publishes: wait until the stream holds them all
        evidence = store.config.stream_for("evidence")
        while (await store.stream_state(evidence))["messages"] < len(entities):  # noqa: ASYNC110 - the server stores; nothing signals it
            await asyncio.sleep(0.05)
    found = await store.subjects(store.config.stream_for("evidence"), "rp.evidence.>")
    expected = {
        store.config.stored(f"rp.evidence.{tenants[n % 3]}.{entity}")
        for n, entity in enumerate(entities)
    }
    assert set(found) == expected
    partitions = {int(subject.split(".")[2]) for subject in found}
    assert partitions == set(range(16)), "285 entities fill all 16 partitions"


def test_partition_of_is_fnv1a_over_tenant_and_entity() -> None:
    """The documented function: FNV-1a 32 over the two tokens written one after the other."""
    assert partition_of("", "", 16) == 0x811C9DC5 % 16
    assert partition_of("t1", "e1", 1) == 0
    assert partition_of("ab", "c", 256) == partition_of("a", "bc", 256)  # plain concatenation


async def test_init_refuses_another_number_of_partitions(
    nats_server: NatsServer, store: EventStore
) -> None:
    """`init --partitions 8` on a store made with 16 is drift: exit 1, the way forward named."""
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", "--partitions", "16", env=env).returncode == 0
    result = riskpipe("init", "--partitions", "8", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "has 16 partitions, not 8" in result.stdout + result.stderr
    assert "Repartitioning" in result.stdout + result.stderr
    info = await store.client.stream_info(store.config.stream_for("evidence"))
    assert info is not None
    assert info["config"]["metadata"]["riskpipe.partitions"] == "16", "left unchanged"


async def test_every_client_takes_the_number_of_partitions_from_the_stream(
    nats_server: NatsServer, single_partition_store: EventStore
) -> None:
    """A worker configured for 16 partitions on a store made with 1 runs one consumer."""
    await single_partition_store.append(evidence("p1"))
    worker = await run_worker(single_partition_store, nats_server.url, partitions=16)
    assert sorted(worker.runners) == [0]
    assert worker.outcomes == {"assessed": 1}
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_PARTITIONS": "16"}
    status = riskpipe("status", "--json", env=env)
    assert orjson.loads(status.stdout)["balanced"] is True


async def test_a_store_made_before_partitions_is_refused_with_the_way_forward(
    nats_server: NatsServer, store: EventStore
) -> None:
    """EVIDENCE without the partition transform: the worker exits 1 and says what to do."""
    info = await store.client.stream_info(store.config.stream_for("evidence"))
    assert info is not None
    old = {**info["config"], "subjects": ["rp.evidence.>"], "metadata": {}}
    del old["subject_transform"]
    await store.client.api(f"STREAM.DELETE.{store.config.stream_for('evidence')}")
    await store.client.api(f"STREAM.CREATE.{store.config.stream_for('evidence')}", old)
    with pytest.raises(PartitionsMismatchError, match="made before partitions"):
        await store.adopt_partitions()
    worked = riskpipe(
        "worker", "--until-idle", "--no-http", env={"RISKPIPE_NATS_URL": nats_server.url}
    )
    assert worked.returncode == 1
    assert "made before partitions" in worked.stderr
    assert "Repartitioning" in worked.stderr
    assert topology_config().partitions == 16
