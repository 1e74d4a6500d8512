"""A TCP proxy in front of a real nats-server: records, injects server errors, blackholes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["NatsProxy", "nats_proxy"]


class NatsProxy:
    """Forwards 127.0.0.1 connections to ``upstream``; what clients sent is kept in ``sent``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.sent = bytearray()
        self.port = 0
        self.blackholed = False
        """While set, bytes are read and dropped both ways: requests go unanswered."""
        self._server: asyncio.Server | None = None
        self._clients: list[asyncio.StreamWriter] = []
        self._from_clients: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The client URL of the proxy."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
        for writer in self._clients:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def server_error(self, text: str) -> None:
        """Send ``-ERR '<text>'`` to every client; return once they have hung up.

        nats-py closes a connection for good on such an error, as the server
        closes it after sending one.
        """
        for writer in self._clients:
            writer.write(f"-ERR '{text}'\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        await asyncio.gather(*self._from_clients, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._clients.append(writer)
        from_client = asyncio.create_task(self._pump(reader, up_writer, record=True))
        self._from_clients.append(from_client)
        for task in (from_client, asyncio.create_task(self._pump(up_reader, writer, record=False))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.blackholed:
                    continue
                if record:
                    self.sent.extend(chunk)
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def nats_proxy(url: str) -> AsyncIterator[NatsProxy]:
    """A started proxy in front of the server at ``url`` (``nats://host:port``)."""
    host, _, port = url.removeprefix("nats://").rpartition(":")
    proxy = NatsProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
