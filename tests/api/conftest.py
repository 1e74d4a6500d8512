"""The API against a real store: dead letters of two tenants, and a token per role and scope."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.api import Tokens, make_dead_letters, make_tokens

from projections.readmodel import Database, ReadModelReader
from riskpipe.api import create_app
from riskpipe.readmodel import read_model
from riskpipe.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from fastapi import FastAPI

    from eventstore import EventStore
    from riskpipe.server import NatsServer


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    """A token of each role for each of :data:`SCOPES`."""
    return make_tokens(tmp_path / "api-tokens.yaml")


@pytest.fixture
async def letters(store: EventStore, nats_server: NatsServer) -> dict[str, list[int]]:
    """DLQ sequences by tenant: acme's, then globex's."""
    return await make_dead_letters(store, nats_server.url)


@pytest.fixture
def registry() -> CollectorRegistry:
    """The app's registry."""
    return CollectorRegistry()


@pytest.fixture
async def readmodel_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A SQLite read model of its own; :func:`follow` brings it up to the log."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'readmodel.db'}")
    yield db
    await db.dispose()


@pytest.fixture
def follow(store: EventStore, readmodel_db: Database) -> Callable[[], Awaitable[None]]:
    """Apply everything the log holds now to the read model (what ``--follow`` keeps doing)."""

    async def caught_up() -> None:
        settings = Settings(nats_url="nats://127.0.0.1:1")
        await read_model(store, readmodel_db, settings).run(asyncio.Event(), until_idle=True)

    return caught_up


@pytest.fixture
def app(
    store: EventStore, tokens: Tokens, registry: CollectorRegistry, readmodel_db: Database
) -> FastAPI:
    """The API on ``store``, with a body limit of 1 KiB and its read model."""
    return create_app(
        store=store,
        tokens=tokens.table,
        registry=registry,
        max_body_bytes=1024,
        reader=ReadModelReader(readmodel_db),
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP requests into the ASGI app (no socket)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http
