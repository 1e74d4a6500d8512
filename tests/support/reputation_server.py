"""A real HTTP/1.1 reputation service on 127.0.0.1 that answers from a script.

Tests tell it to answer, fail with a status, hang past the client's timeout,
drop the connection, send bad data, or recover; it records every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["DROP", "HANG", "Reply", "ReputationServer", "reputation"]

_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP response."""

    status: int = 200
    body: bytes = b'{"modifier": 0.25}'


HANG = Reply(status=0, body=b"hang")
"""Read the request, then never answer (until the server stops)."""
DROP = Reply(status=0, body=b"drop")
"""Read the request, then close the connection without answering."""


class ReputationServer:
    """Serves scripted replies in order; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[str | None] = []
        """Each request's ``Riskpipe-Delivery`` header (``None``: it had none)."""
        self._script: list[Reply] = [Reply()]
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Release hung requests, stop listening and wait for every handler."""
        self._release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        """The reputation endpoint's URL."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/reputation"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, repeating the last one."""
        self._script = list(replies)

    async def wait_for_requests(self, count: int) -> None:
        """Return once ``count`` requests have arrived (bounded by the caller's timeout)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = {
            name.strip().lower(): value.strip().decode()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        body = await reader.readexactly(int(fields.get(b"content-length", 0)))
        reply = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        async with self._arrived:
            self.deliveries.append(fields.get(b"riskpipe-delivery"))
            self.requests.append(json.loads(body))
            self._arrived.notify_all()
        if reply is HANG:
            await self._release.wait()
            return
        if reply is DROP:
            return
        reason = _REASONS.get(reply.status, "Status")
        writer.write(
            f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(reply.body)}\r\nConnection: close\r\n\r\n".encode()
            + reply.body
        )
        await writer.drain()


@pytest.fixture
async def reputation() -> AsyncIterator[ReputationServer]:
    """A scripted reputation service on a free loopback port, stopped after the test."""
    server = ReputationServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
