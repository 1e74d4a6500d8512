"""A worker started while NATS is down waits for it, unready, instead of exiting."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
from support.events import evidence
from support.pipeline import WorkerProcess

from eventstore import EventStore
from riskpipe.server import NatsServer, reserve_ports
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path


async def test_worker_waits_unready_until_nats_comes_up_then_assesses(tmp_path: Path) -> None:
    """Started before NATS, it waits (logged, /readyz 503), then connects and assesses."""
    (port,) = reserve_ports("127.0.0.1", 1)
    server = NatsServer(data_dir=tmp_path / "nats", port=port)
    worker = WorkerProcess(server.url, env={"RISKPIPE_FETCH_TIMEOUT": "0.2"}, http=True)
    worker.start(wait=False)
    try:
        http = await asyncio.to_thread(worker.logged, "worker.http")
        waiting = await asyncio.to_thread(worker.logged, "nats.waiting")
        assert waiting["attempt"] == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http['port']}") as client:
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
        assert (ready.status_code, ready.text.strip()) == (503, "waiting for NATS")
        assert alive.status_code == 200
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(worker.logged, "projection.started")
        store = await EventStore.connect(
            server.url, schemas=build_schemas(), config=topology_config()
        )
        async with store, asyncio.timeout(30):
            await store.append(evidence("late"))
            while await store.count("RISK", "rp.risk.>") < 1:  # noqa: ASYNC110 - nothing signals it
                await asyncio.sleep(0.1)
    finally:
        code = await asyncio.to_thread(worker.stop)
        server.kill()
    assert code == 0


async def test_sigterm_while_waiting_for_nats_exits_0() -> None:
    """A worker still waiting for NATS stops cleanly on SIGTERM."""
    (port,) = reserve_ports("127.0.0.1", 1)
    worker = WorkerProcess(f"nats://127.0.0.1:{port}")
    worker.start(wait=False)
    try:
        await asyncio.to_thread(worker.logged, "nats.waiting")
    finally:
        code = await asyncio.to_thread(worker.stop)
    assert code == 0
    assert not worker.events("worker.failed")
