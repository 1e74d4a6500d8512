"""A real nats-server per test (port -1, JetStream, temp store, killed by PID), and a store."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, StoreConfig
from riskpipe.server import NatsCluster, NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

__all__ = [
    "QUICK_LEASES",
    "QUICK_LEASE_TTL",
    "cluster_store",
    "nats_cluster",
    "nats_server",
    "quick_lease_store",
    "raw_publish",
    "single_partition_store",
    "store",
    "trace_to",
]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port, stopped after the test."""
    server = NatsServer(data_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-server nodes on loopback forming one JetStream cluster, killed after the test."""
    cluster = NatsCluster(data_dir=tmp_path / "cluster")
    cluster.start(timeout=60.0)  # a loaded machine can take past the default 20 s to elect
    try:
        yield cluster
    finally:
        cluster.kill()


@contextlib.asynccontextmanager
async def _provisioned(
    url: str, config: StoreConfig, **options: float
) -> AsyncIterator[EventStore]:
    """A store connected to ``url`` with its streams provisioned, closed after the block."""
    es = await EventStore.connect(url, schemas=build_schemas(), config=config, **options)
    await es.provision()
    try:
        yield es
    finally:
        await es.close()


@pytest.fixture
async def store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """A store connected to a fresh server, with its streams provisioned."""
    async with _provisioned(nats_server.url, topology_config(), timeout=2.0) as es:
        yield es


QUICK_LEASE_TTL = timedelta(seconds=3)
"""The lease TTL of ``quick_lease_store``: a crashed worker's partitions move within ~4 s."""
QUICK_LEASES = {"RISKPIPE_LEASE_TTL": str(int(QUICK_LEASE_TTL.total_seconds()))}
"""The environment of worker processes on ``quick_lease_store``: they find its bucket as made."""


@pytest.fixture
async def quick_lease_store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """Like ``store``, its lease bucket made with :data:`QUICK_LEASE_TTL` instead of 15 s.

    Worker processes take the TTL from the bucket; give them :data:`QUICK_LEASES`
    too, so that their own provisioning finds the bucket as they would make it.
    """
    config = topology_config(lease_ttl=QUICK_LEASE_TTL)
    async with _provisioned(nats_server.url, config, timeout=2.0) as es:
        yield es


@pytest.fixture
async def single_partition_store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """Like ``store``, made with one partition: one consumer ``risk-0``, one checkpoint record."""
    async with _provisioned(nats_server.url, topology_config(partitions=1)) as es:
        yield es


@pytest.fixture
async def cluster_store(nats_cluster: NatsCluster) -> AsyncIterator[EventStore]:
    """A store connected to every node of ``nats_cluster``, its streams provisioned with R3."""
    async with _provisioned(nats_cluster.urls, topology_config(replicas=3)) as es:
        yield es


LARGE_PAYLOAD_BYTES = 800_000
"""A payload limit near the server's 1 MiB max_payload, for originals too large to copy."""


@pytest.fixture
async def large_store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """Like ``store``, with a payload limit of :data:`LARGE_PAYLOAD_BYTES`."""
    config = topology_config(max_payload_bytes=LARGE_PAYLOAD_BYTES)
    async with _provisioned(nats_server.url, config) as es:
        yield es


async def raw_publish(url: str, subject: str, header_block: bytes, payload: bytes) -> None:
    """Publish with a header block as a client in another language may send it (no checks)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    await reader.readline()  # INFO
    hdr = header_block + b"\r\n"
    writer.write(
        b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n'
        + f"HPUB {subject} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode()
        + hdr
        + payload
        + b"\r\nPING\r\n"
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"PONG")
    writer.close()
    await writer.wait_closed()


async def trace_to(url: str, destination: str) -> None:
    """Have nats-server publish the JSON trace event of a harmless message to ``destination``.

    Any client may name any subject as a message's ``Nats-Trace-Dest``; the
    server then stores its trace event there if a stream captures it.
    """
    header = f"NATS/1.0\r\nNats-Trace-Dest: {destination}\r\n".encode()
    await raw_publish(url, "probe.trace", header, b"hi")
