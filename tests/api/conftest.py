"""The API against a real store: dead letters of two tenants, and a token per role and scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.pipeline import run_worker

from riskpipe.api import ROLES, ApiRole, TokenTable, add_token, create_app, load_tokens

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from fastapi import FastAPI

    from eventstore import EventStore
    from riskpipe.server import NatsServer

SCOPES = ("acme", "*")
"""Every role gets a token of tenant acme, and one of every tenant."""
LETTERS_PER_TENANT = 8


@dataclass
class Tokens:
    """The tokens file, and each role and scope's token in plain text."""

    path: Path
    table: TokenTable
    plain: dict[tuple[ApiRole, str], str]

    def header(self, role: ApiRole, scope: str) -> dict[str, str]:
        """The ``Authorization`` header of the token of ``role`` and ``scope``."""
        return {"Authorization": f"Bearer {self.plain[role, scope]}"}


def make_tokens(path: Path) -> Tokens:
    """A tokens file with a token of each role for each of :data:`SCOPES`."""
    plain = {}
    for role in ROLES:
        for scope in SCOPES:
            name = f"{role}-{'all' if scope == '*' else scope}"
            plain[role, scope] = add_token(path, name, role, [scope])
    return Tokens(path, load_tokens(path), plain)


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    """A token of each role for each of :data:`SCOPES`."""
    return make_tokens(tmp_path / "api-tokens.yaml")


async def make_dead_letters(store: EventStore, url: str) -> dict[str, list[int]]:
    """Poison evidence of tenants acme and globex, dead-lettered by a real worker."""
    for tenant in ("acme", "globex"):
        for n in range(LETTERS_PER_TENANT):
            await store.append_unchecked(
                "evidence", tenant, f"user-{n}", b"{broken", msg_id=f"poison:{tenant}:{n}"
            )
    await run_worker(store, url)
    letters: dict[str, list[int]] = {"acme": [], "globex": []}
    async for rec in store.read_all(stream=store.config.dlq_stream):
        assert rec.event is not None
        letters[rec.event.tenant].append(rec.sequence)
    assert all(len(seqs) == LETTERS_PER_TENANT for seqs in letters.values()), letters
    return letters


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
