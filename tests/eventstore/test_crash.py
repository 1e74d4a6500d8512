"""Server crashes: acknowledged events survive kill -9, and the client reconnects."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from support.events import evidence

from eventstore.errors import TransientStoreError

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _producer(
    store: EventStore, total: int, acked: list[str], started: asyncio.Event
) -> None:
    for i in range(total):
        event = evidence(f"c{i}", entity=f"e{i % 7}")
        while True:
            try:
                await store.append(event)
                break
            except TransientStoreError:
                await asyncio.sleep(0)  # the store already backed off; try the same event again
        acked.append(event.id)
        if len(acked) == 50:
            started.set()


async def test_kill_9_loses_no_acknowledged_event(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Kill -9 of the server mid-stream, restart on the same store: every acked event is there."""
    acked: list[str] = []
    started = asyncio.Event()
    producer = asyncio.create_task(_producer(store, 300, acked, started))
    async with asyncio.timeout(60):
        await started.wait()
        nats_server.kill()
        await asyncio.to_thread(nats_server.start)
        await producer
    stored = [r.event.id async for r in store.read_all() if r.event is not None]
    assert set(acked) <= set(stored)
    assert len(stored) == len(set(stored)) == 300
    assert store.client.connected
