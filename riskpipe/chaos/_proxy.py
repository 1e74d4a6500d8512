"""A TCP proxy of the harness's own between a worker and a server: how it cuts the network.

Each worker reaches each node through a proxy of its own, so one worker can
be cut off while the others and the producers carry on. Three ways to cut:

- ``refuse``: stop listening and close every connection (reconnects are refused);
- ``blackhole``: keep the connections, drop every byte both ways (nothing is
  refused, nothing arrives: the worst case for timeouts);
- ``sever``: close every connection once (reconnects succeed at once).

A heal listens again on the same port and lets bytes through. Bytes dropped
by a blackhole are gone: the connection's protocol is broken after it, and
the client or the server closes it, as after a real outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

__all__ = ["Cut", "TcpProxy"]

Cut = Literal["refuse", "blackhole", "sever"]
_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``; cut and healed on demand."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.blackholed = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cuts = 0
        """Cuts that closed connections so far: one accepted meanwhile is closed too."""

    @property
    def url(self) -> str:
        """The client URL of the proxy."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on a free loopback port the first time, on the same one after)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self, how: Cut) -> None:
        """Cut the network between the worker and its node, ``how``."""
        if how == "blackhole":
            self.blackholed = True
            return
        self._cuts += 1
        server = self._server if how == "refuse" else None
        if server is not None:
            self._server = None
            server.close()
        self._close_all()
        if server is not None:
            # Since Python 3.12 this waits for the connections it accepted, so it
            # comes after they are closed (before, it would wait forever).
            await server.wait_closed()

    async def heal(self) -> None:
        """Let everything through again, listening if it had stopped."""
        self.blackholed = False
        if self._server is None:
            await self.start()

    async def stop(self) -> None:
        """Stop listening and close everything."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cuts = self._cuts
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()  # the node is down: as if it refused
            self._writers.discard(writer)
            return
        if cuts != self._cuts:  # cut while connecting upstream: this connection is cut too
            writer.close()
            up_writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, (writer, up_writer)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(_CHUNK):
                if self.blackholed:
                    continue
                sink.write(chunk)
                await sink.drain()
        for writer in pair:  # one side closed: close the other, as a router would
            writer.close()
            self._writers.discard(writer)
