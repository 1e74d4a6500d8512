"""A real nats-server per test (port -1, JetStream, temp store, killed by PID), and a store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, StoreConfig
from riskpipe.server import NatsServer
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

__all__ = ["nats_server", "store"]


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
async def store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """A store connected to a fresh server, with its streams provisioned."""
    es = await EventStore.connect(
        nats_server.url, schemas=build_schemas(), config=StoreConfig(), timeout=2.0
    )
    await es.provision()
    try:
        yield es
    finally:
        await es.close()
