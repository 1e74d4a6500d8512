"""The worker's /healthz, /readyz and /metrics over real HTTP, through real outages."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.events import evidence
from support.proxy import nats_proxy
from support.reputation_server import Reply, ReputationServer

from eventstore import EventStore
from eventstore.errors import ConnectionClosedError
from riskpipe.settings import Settings
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from riskpipe.server import NatsServer


async def _get(port: int, path: str) -> tuple[int, str]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.get(path)
    return response.status_code, response.text


async def _until(port: int, path: str, status: int) -> str:
    """Poll an endpoint until it answers ``status`` (the condition lives in another process)."""
    async with asyncio.timeout(30):
        while True:
            code, body = await _get(port, path)
            if code == status:
                return body
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _running(store: EventStore, url: str, **overrides: object) -> AsyncIterator[Worker]:
    settings = Settings(nats_url=url, http_port=0, fetch_timeout=0.2, **overrides)
    worker = Worker(store, settings, CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(10):
            await worker.started.wait()
        yield worker
    finally:
        stop.set()
        await task


async def test_health_ready_and_metrics(nats_server: NatsServer, store: EventStore) -> None:
    """Healthz is always 200; readyz is 200 when connected and running; metrics are exposed."""
    async with _running(store, nats_server.url) as worker:
        port = worker.http.port  # type: ignore[union-attr]
        assert await _get(port, "/healthz") == (200, "ok\n")
        assert (await _get(port, "/readyz")) == (200, "ready\n")
        code, body = await _get(port, "/metrics")
        assert code == 200
        assert "riskpipe_projection_messages_total" in body
        assert (await _get(port, "/nope"))[0] == 404


async def test_paused_gauge_exists_from_start_up(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A started worker reports riskpipe_projection_paused as 0 for each consumer it runs."""
    async with _running(store, nats_server.url) as worker:
        for partition in range(store.config.partitions):
            labels = {"projection": "risk", "consumer": f"risk-{partition}"}
            value = worker.registry.get_sample_value("riskpipe_projection_paused", labels)
            assert value == 0.0, labels


async def test_readyz_follows_the_nats_connection(
    nats_server: NatsServer, store: EventStore
) -> None:
    """With the server down readyz says why and answers 503; after a restart it is ready again."""
    async with _running(store, nats_server.url) as worker:
        port = worker.http.port  # type: ignore[union-attr]
        nats_server.kill()
        assert "not connected to NATS" in await _until(port, "/readyz", 503)
        assert (await _get(port, "/healthz"))[0] == 200
        await asyncio.to_thread(nats_server.start)
        assert await _until(port, "/readyz", 200) == "ready\n"


async def test_readyz_reports_an_open_breaker(nats_server: NatsServer, store: EventStore) -> None:
    """When enrichment's breaker opens the worker pauses and readyz says so; it recovers."""
    reputation = ReputationServer()
    await reputation.start()
    reputation.script(
        Reply(status=503), Reply(status=503), Reply(status=200, body=b'{"modifier": 0}')
    )
    try:
        await store.append(evidence("b1"))
        async with _running(
            store, nats_server.url, enrichment_url=reputation.url, enrichment_attempts=1,
            enrichment_fail_max=1, enrichment_reset_seconds=1.0, retry_attempts=1,
            redelivery_backoff_seconds=(0.05,),
        ) as worker:  # fmt: skip
            port = worker.http.port  # type: ignore[union-attr]
            assert "paused" in await _until(port, "/readyz", 503)
            await _until(port, "/readyz", 200)
    finally:
        await reputation.stop()


async def test_a_connection_closed_for_good_fails_healthz_and_ends_the_worker(
    nats_server: NatsServer,
) -> None:
    """The server closes the connection for good: /healthz fails, then run() raises, bounded."""
    async with nats_proxy(nats_server.url) as proxy:
        store = await EventStore.connect(
            proxy.url, schemas=build_schemas(), config=topology_config(), timeout=1.0
        )
        try:
            await store.provision()
            settings = Settings(nats_url=proxy.url, http_port=0, fetch_timeout=0.2)
            worker = Worker(store, settings, CollectorRegistry())
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            async with asyncio.timeout(10):
                await worker.started.wait()
            port = worker.http.port  # type: ignore[union-attr]
            assert await _get(port, "/healthz") == (200, "ok\n")
            async with asyncio.timeout(10):
                await proxy.server_error("Unknown Protocol Operation")
            code, body = await _get(port, "/healthz")
            assert (code, body.strip()) == (
                503,
                "NATS connection closed for good: nats: unknown protocol operation",
            )
            with pytest.raises(ConnectionClosedError, match="closed for good"):
                async with asyncio.timeout(30):
                    await task
            assert not stop.is_set()
        finally:
            await store.close()
