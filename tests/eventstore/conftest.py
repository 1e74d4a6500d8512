"""Fixtures for the event store tests: a provisioned store on a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, StoreConfig
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from riskpipe.server import NatsServer


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
