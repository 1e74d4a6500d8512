"""Inline subscriptions: the store's inboxes bypass nats-py's per-message machinery safely."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats.aio.client
import pytest

from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._transport import FastTransport

if TYPE_CHECKING:
    from riskpipe.server import NatsServer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        (b"NATS/1.0\r\nNats-Msg-Id: src:1\r\n\r\n", {"Nats-Msg-Id": "src:1"}),
        (b"NATS/1.0 503\r\n\r\n", {"Status": "503"}),
        (b"NATS/1.0 404 No Messages\r\n\r\n", {"Status": "404", "Description": "No Messages"}),
        (
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Stream: 7\r\n\r\n",
            {"Status": "100", "Description": "Idle Heartbeat", "Nats-Last-Stream": "7"},
        ),
        (
            b"NATS/1.0\r\nA:no-space\r\nbad line\r\nB: caf\xc3\xa9\r\n\r\n",
            {"A": "no-space", "B": "café"},
        ),
    ],
)
def test_parse_headers(raw: bytes | None, expected: dict[str, str]) -> None:
    """Header blocks read as nats-py reads them, inline statuses included."""
    assert parse_headers(raw) == expected


async def test_a_failing_handler_neither_loses_later_messages_nor_others(
    nats_server: NatsServer,
) -> None:
    """A handler that raises is logged; later messages and plain subscriptions still arrive."""
    nc = nats.aio.client.Client()
    await nc.connect(servers=[nats_server.url])
    try:
        inline = FastTransport(nc)
        seen: list[tuple[bytes, bytes, bytes, bytes | None]] = []

        def handler(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            if data == b"boom":
                raise RuntimeError("handler bug")
            seen.append((subject, reply, data, headers))

        sub = await inline.subscribe("inline.>", handler)
        plain: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_plain(msg: nats.aio.client.Msg) -> None:
            await plain.put(msg.data)

        await nc.subscribe("plain", cb=on_plain)
        await nc.publish("inline.a", b"boom")
        await nc.publish("inline.b", b"two", reply="r.1", headers={"K": "v"})
        await nc.publish("plain", b"three")
        await nc.flush()
        assert await asyncio.wait_for(plain.get(), 5) == b"three"
        assert seen == [(b"inline.b", b"r.1", b"two", b"NATS/1.0\r\nK: v\r\n\r\n")]

        await inline.unsubscribe(sub)
        await nc.publish("inline.c", b"after")
        await nc.flush()
        assert len(seen) == 1
        assert nc.is_connected
    finally:
        await nc.close()
