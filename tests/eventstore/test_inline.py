"""Inline subscriptions: the store's inboxes bypass nats-py's per-message machinery safely."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats.aio.client
import pytest
from support.events import evidence

from eventstore._jetstream._inline import InlineDispatch, parse_headers
from eventstore.errors import SchemaViolationError

if TYPE_CHECKING:
    from eventstore import EventStore
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
        inline = InlineDispatch(nc)
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


async def test_append_many_keeps_input_order_across_chunks(store: EventStore) -> None:
    """Results line up with the input across send chunks, rejected events included.

    More than the chunks kept in flight, so early chunks are settled while
    later ones are still being sent.
    """
    total = 256 * 11 + 7
    bad = {0, 255, 256, 511, 700, 2303, 2304, total - 1}
    events = [
        evidence(f"c{i}").model_copy(update={"data": {"pattern": "Bad", "severity": "low"}})
        if i in bad
        else evidence(f"c{i}")
        for i in range(total)
    ]
    events[900] = evidence("c899")  # a duplicate of an event earlier in the same call
    results = await store.append_many(events)
    rejected = [isinstance(r, SchemaViolationError) for r in results]
    assert rejected == [i in bad for i in range(total)]
    duplicate = results[900]
    assert not isinstance(duplicate, Exception)
    assert duplicate.duplicate
    assert duplicate.sequence == results[899].sequence  # type: ignore[union-attr]
    stored = [r.sequence for r in results if not isinstance(r, Exception) and not r.duplicate]
    assert stored == list(range(1, total - len(bad)))
