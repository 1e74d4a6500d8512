"""The harness's TCP proxy cuts and heals a connection the three ways a network fails."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from riskpipe.chaos._proxy import TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    """A proxy in front of an echo server on loopback."""
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = TcpProxy("127.0.0.1", server.sockets[0].getsockname()[1])
    await proxy.start()
    yield proxy
    await proxy.stop()
    server.close()


async def _round_trip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2.0)
    finally:
        writer.close()


async def test_bytes_pass_until_refused_and_again_after_the_heal(proxy: TcpProxy) -> None:
    """Refused: no new connection; healed: on the same port as before."""
    port = proxy.port
    assert await _round_trip(port) == b"ping"
    await proxy.cut("refuse")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await proxy.heal()
    assert proxy.port == port
    assert await _round_trip(port, b"again") == b"again"


async def test_a_blackhole_keeps_the_connection_and_answers_nothing(proxy: TcpProxy) -> None:
    """Nothing is refused, nothing arrives: the caller can only time out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"up")
    assert await asyncio.wait_for(reader.readexactly(2), 2.0) == b"up"
    await proxy.cut("blackhole")
    writer.write(b"lost")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(4), 0.5)
    await proxy.heal()
    writer.write(b"back")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), 2.0) == b"back"
    writer.close()


async def test_a_sever_closes_the_connection_and_lets_the_next_in(proxy: TcpProxy) -> None:
    """The client sees its connection end; reconnecting works at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"up")
    assert await asyncio.wait_for(reader.readexactly(2), 2.0) == b"up"
    await proxy.cut("sever")
    assert await asyncio.wait_for(reader.read(10), 2.0) == b""
    writer.close()
    assert await _round_trip(proxy.port) == b"ping"


async def test_a_connection_accepted_while_cut_is_cut_too(proxy: TcpProxy) -> None:
    """A sever that lands while a client's connection is still being set up still closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await proxy.cut("sever")  # the proxy may not have reached the upstream yet
    assert await asyncio.wait_for(reader.read(10), 2.0) == b""
    writer.close()
