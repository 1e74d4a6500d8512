"""A chaos run's cluster dials its routes through proxies: one node is cut off, then back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import nats
import pytest

from eventstore.errors import EventStoreError
from riskpipe.chaos._processes import Servers
from riskpipe.settings import Settings
from riskpipe.wiring import connect_store, private_settings

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


async def test_a_leader_read_behind_a_cut_fails_and_is_never_older(servers: Servers) -> None:
    """A checkpoint read must never see one go back: the leader answers, or nobody does.

    Any replica may answer a direct get, one still catching up with an older
    value (a 3-node chaos run, seed 11, read a checkpoint going back after
    ``partition-node``). From a node cut off, a leader read fails; once the
    node is back, its first answer is already the value written meanwhile.
    """
    settings = Settings(replicas=3, election_window=timedelta(seconds=2))
    stores = [
        await connect_store(private_settings(settings, node.url), name=f"n{i}")
        for i, node in enumerate(servers.nodes)
    ]
    try:
        await stores[0].provision()
        bucket = stores[0].config.checkpoint_bucket
        info = await stores[0].client.stream_info(f"KV_{bucket}")
        assert info is not None
        leader = servers.index_of(info["cluster"]["leader"])
        behind = next(i for i in range(3) if i != leader)
        writer = stores[next(i for i in range(3) if i != behind)].kv(bucket)
        reader = stores[behind].kv(bucket)
        await writer.put("k", b"1")
        await servers.isolate(behind, "refuse")
        await writer.put("k", b"2")
        with pytest.raises(EventStoreError):  # the leader is out of reach: no answer at all
            await reader.get("k", leader=True)
        await servers.reconnect(behind)
        answers: list[bytes] = []
        deadline = time.monotonic() + 20.0
        while not answers and time.monotonic() < deadline:
            with contextlib.suppress(EventStoreError):
                entry = await reader.get("k", leader=True)
                answers.append(entry.value if entry is not None else b"")
            await asyncio.sleep(0.05)
        assert answers == [b"2"]
    finally:
        for store in stores:
            await store.close()
