"""The worker's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

A deliberately tiny HTTP/1.1 server on asyncio: three GET routes, no
keep-alive, nothing else to attack or to configure.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import CollectorRegistry

__all__ = ["HealthServer"]

_MAX_REQUEST_LINE = 4096


class HealthServer:
    """Serves health, readiness and metrics on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        readiness: Callable[[], tuple[bool, str]],
        liveness: Callable[[], tuple[bool, str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 9464,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Start listening; ``port`` then holds the bound port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers are not needed
            status, ctype, body = self._route(line[:_MAX_REQUEST_LINE])
        except (TimeoutError, ConnectionError):
            writer.close()
            return
        head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _route(self, line: bytes) -> tuple[str, str, bytes]:
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] != "GET":  # noqa: PLR2004 - method and path
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        path = parts[1].split("?", 1)[0]
        if path == "/healthz":
            alive, why = self.liveness() if self.liveness is not None else (True, "ok")
            status = "200 OK" if alive else "503 Service Unavailable"
            return status, "text/plain", (why + "\n").encode()
        if path == "/readyz":
            ready, reason = self.readiness()
            status = "200 OK" if ready else "503 Service Unavailable"
            return status, "text/plain", (reason + "\n").encode()
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return "404 Not Found", "text/plain", b"not found\n"
