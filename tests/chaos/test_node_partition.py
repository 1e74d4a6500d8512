"""A chaos run's cluster dials its routes through proxies: one node is cut off, then back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import nats
import pytest

from riskpipe.chaos._processes import Servers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from nats.aio.client import Client


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    """Three nodes whose routes all go through the harness's proxies."""
    servers = Servers(tmp_path / "nats", 3)
    await servers.start_routes()
    try:
        await asyncio.to_thread(servers.start)
        yield servers
    finally:
        servers.stop()
        await servers.stop_routes()


async def _reaches(sender: Client, receiver: Client, subject: str, wait: float) -> bool:
    """Whether a message sent on ``sender``'s node reaches ``receiver``'s within ``wait``."""
    subscription = await receiver.subscribe(subject)
    await receiver.flush()
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:  # interest takes a moment to cross a route
            await sender.publish(subject, b"probe")
            await sender.flush()
            with contextlib.suppress(TimeoutError):
                await subscription.next_msg(timeout=0.2)
                return True
        return False
    finally:
        await subscription.unsubscribe()


async def test_an_isolated_node_hears_nobody_until_it_is_reconnected(servers: Servers) -> None:
    """Each way cut, and no way around (a node dials nobody it hears of); healed: back."""
    assert len(servers.routes) == 6  # every ordered pair of three nodes
    clients = [await nats.connect(node.url, allow_reconnect=False) for node in servers.nodes]
    try:
        assert await _reaches(clients[1], clients[0], "p.before", 10.0)
        await servers.isolate(0, "refuse")
        await asyncio.sleep(1.0)  # what was in flight has landed
        assert not await _reaches(clients[1], clients[0], "p.cut.in", 3.0)
        assert not await _reaches(clients[0], clients[2], "p.cut.out", 1.0)
        assert await _reaches(clients[1], clients[2], "p.majority", 10.0)
        await servers.reconnect(0)
        assert not servers.isolated
        assert await _reaches(clients[1], clients[0], "p.after", 20.0)
        assert await _reaches(clients[0], clients[2], "p.after.out", 20.0)
    finally:
        for client in clients:
            await client.close()
