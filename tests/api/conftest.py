"""The API against a real store: dead letters of two tenants, and a token per role and scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.api import Tokens, make_dead_letters, make_tokens

from riskpipe.api import create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
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
def app(store: EventStore, tokens: Tokens, registry: CollectorRegistry) -> FastAPI:
    """The API on ``store``, with a body limit of 1 KiB."""
    return create_app(store=store, tokens=tokens.table, registry=registry, max_body_bytes=1024)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP requests into the ASGI app (no socket)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http
