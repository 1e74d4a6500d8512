"""A local 3-node cluster: ``riskpipe server --cluster``, ``init --replicas``, producers' URLs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from support.cli import riskpipe
from support.events import BASE_TIME, evidence
from support.tools import require_tool

from eventstore import EventStore
from riskpipe.client import Producer, Recorded
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsCluster

_REPLICAS = 3


async def _api(store: EventStore, subject: str) -> dict[str, Any]:
    return await store.client.api(subject)


async def _durables(store: EventStore) -> dict[str, list[dict[str, Any]]]:
    """Every stream's info (KV buckets included), and the durable consumers of each."""
    names = (await _api(store, "STREAM.NAMES"))["streams"]
    found: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        consumers = (await _api(store, f"CONSUMER.LIST.{name}"))["consumers"] or []
        found[name] = [c for c in consumers if c["config"].get("durable_name")]
    return found


def _replica_count(info: dict[str, Any]) -> int:
    """How many copies the cluster keeps: the leader and its followers."""
    cluster = info.get("cluster") or {}
    return (1 if cluster.get("leader") else 0) + len(cluster.get("replicas") or [])


async def test_init_replicas_3_makes_every_stream_bucket_and_consumer_r3(
    nats_cluster: NatsCluster,
) -> None:
    """After ``init --replicas 3`` and a worker, every stream, bucket and durable has 3 copies."""
    env = {"RISKPIPE_NATS_URL": nats_cluster.urls}
    init = riskpipe("init", "--replicas", "3", env=env)
    assert init.returncode == 0, init.stderr
    worker = riskpipe("worker", "--until-idle", "--no-http", env={**env, "RISKPIPE_REPLICAS": "3"})
    assert worker.returncode == 0, worker.stderr
    store = await EventStore.connect(
        nats_cluster.urls, schemas=build_schemas(), config=topology_config()
    )
    async with store:
        durables = await _durables(store)
        assert {"EVIDENCE", "RISK", "DLQ", "AUDIT", "KV_rp-checkpoints", "KV_rp-leases"} <= set(
            durables
        )
        assert any(durables.values()), "the worker created no durable consumer"
        for name, consumers in durables.items():
            info = await _api(store, f"STREAM.INFO.{name}")
            assert info["config"]["num_replicas"] == _REPLICAS, name
            assert _replica_count(info) == _REPLICAS, name
            for consumer in consumers:
                assert _replica_count(consumer) == _REPLICAS, (name, consumer["name"])


async def test_producer_with_every_url_reconnects_to_a_surviving_node(
    nats_cluster: NatsCluster,
) -> None:
    """A producer given all three URLs keeps recording after the node it uses is killed."""
    store = await EventStore.connect(
        nats_cluster.urls, schemas=build_schemas(), config=topology_config(replicas=_REPLICAS)
    )
    async with store:
        await store.provision()
    async with await Producer.connect(nats_cluster.urls) as producer:
        await _record(producer, "before")
        nc = producer._store.client.nc  # noqa: SLF001 - which node it uses, to kill that one
        used = nc.connected_url
        assert used is not None
        victim = next(node for node in nats_cluster.nodes if node.port == used.port)
        victim.kill()
        async with asyncio.timeout(30):
            stored = await _record(producer, "after")
        assert nc.connected_url is not None
        assert nc.connected_url.port != used.port
        assert not stored.duplicate


async def _record(producer: Producer, event_id: str) -> Recorded:
    return await producer.record(
        "t1", "e1", "failed_login_burst", "high", id=event_id, source="idp", time=BASE_TIME
    )


async def test_a_killed_node_comes_back_on_its_ports_and_catches_up(
    nats_cluster: NatsCluster, cluster_store: EventStore
) -> None:
    """A follower killed with -9 comes back on its URL and holds what was stored meanwhile."""
    leader = (await _api(cluster_store, "STREAM.INFO.EVIDENCE"))["cluster"]["leader"]
    node = next(n for n in nats_cluster.nodes if n is not nats_cluster.node_named(leader))
    url = node.url
    node.kill()
    results = await cluster_store.append_many([evidence(f"k{i}", minute=i) for i in range(50)])
    assert not [r for r in results if isinstance(r, Exception)]
    await asyncio.to_thread(nats_cluster.restart, node)
    assert node.url == url
    alone = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    async with alone, asyncio.timeout(30):
        while True:  # the node catches up through its own raft log: wait for that
            info = await _api(alone, "STREAM.INFO.EVIDENCE")
            replicas = info["cluster"].get("replicas") or []
            if len(replicas) == _REPLICAS - 1 and all(r.get("current") for r in replicas):
                break
            await asyncio.sleep(0.1)
        assert info["state"]["messages"] == len(results)


def test_server_cluster_prints_the_urls_and_sigterm_stops_every_node(tmp_path: Path) -> None:
    """``server --cluster`` prints three URLs on stdout, serves R3 streams, and stops on SIGTERM."""
    pgrep = require_tool("pgrep")
    cmd = [sys.executable, "-m", "riskpipe", "server", "--cluster", "--quiet", "--port", "-1",
           "--data-dir", str(tmp_path / "c")]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        urls = proc.stdout.readline().strip()
        try:
            assert "cluster ready on" in proc.stderr.readline()
            assert len(set(urls.split(","))) == _REPLICAS
            assert all(url.startswith("nats://127.0.0.1:") for url in urls.split(","))
            init = riskpipe("init", "--replicas", "3", env={"RISKPIPE_NATS_URL": urls})
            assert init.returncode == 0, init.stderr
            assert [len(list((tmp_path / "c").glob(f"n{i}/jetstream"))) for i in (1, 2, 3)] == [
                1,
                1,
                1,
            ]
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    children = subprocess.run([pgrep, "-P", str(proc.pid)], capture_output=True, check=False)
    assert children.stdout == b""
