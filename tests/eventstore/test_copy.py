"""Copies of stored messages: kept byte for byte, stored in order and unbroken, or not at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.events import evidence
from support.nats import raw_publish

from eventstore import AppendResult, copy_of
from eventstore.errors import ConcurrencyConflictError

if TYPE_CHECKING:
    from eventstore import Copy, EventStore, RawMessage
    from riskpipe.server import NatsServer


async def _stored(store: EventStore) -> list[RawMessage]:
    return [raw async for batch in store.read_batches() for raw in batch]


async def _copies(store: EventStore, count: int) -> list[Copy]:
    results = await store.append_many(evidence(f"c{n}", entity=f"u{n % 3}") for n in range(count))
    assert all(isinstance(r, AppendResult) for r in results)
    return [
        copy_of(raw, f"rp.evidence.t2.{raw.subject.rsplit('.', 1)[1]}", f"key-{raw.seq}")
        for raw in await _stored(store)
    ]


async def test_a_copy_keeps_the_header_lines_and_replaces_the_nats_ones(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Case, order and repeats of the original's lines stay; its Nats-* lines do not."""
    block = b"NATS/1.0\r\nX-Trace: a\r\nx-trace: b\r\nNats-Msg-Id: old\r\nce-Id: 7\r\n"
    await raw_publish(nats_server.url, "rp.evidence.t1.e1", block, b"payload")
    (raw,) = await _stored(store)
    copy = copy_of(raw, "rp.evidence.t1.e1", "new-key")
    message = copy.message(0)
    assert message.payload == b"payload"
    assert message.headers.block == (  # type: ignore[attr-defined] # a HeaderBlock
        b"NATS/1.0\r\nX-Trace: a\r\nx-trace: b\r\nce-Id: 7\r\n"
        b"Nats-Msg-Id: new-key\r\nNats-Expected-Last-Sequence: 0\r\n\r\n"
    )


async def test_copies_are_stored_in_order_after_the_given_sequence(store: EventStore) -> None:
    """Appended after the stream's last sequence: every one stored, in order, nothing else."""
    copies = await _copies(store, 10)
    results = await store.append_in_order(copies, after=10)
    assert [r.sequence for r in results if isinstance(r, AppendResult)] == list(range(11, 21))
    stored = (await _stored(store))[10:]
    assert [raw.data for raw in stored] == [c.payload for c in copies]
    assert [raw.headers["Nats-Msg-Id"] for raw in stored] == [c.msg_id for c in copies]


async def test_a_stale_sequence_stores_none_of_them(store: EventStore) -> None:
    """Whatever was appended since the caller looked, the copies are refused, not added after."""
    copies = await _copies(store, 5)
    results = await store.append_in_order(copies, after=4)
    assert all(isinstance(r, ConcurrencyConflictError) for r in results)
    assert int((await store.stream_state("EVIDENCE"))["messages"]) == 5


async def test_a_message_in_a_failed_copys_place_stops_the_rest(store: EventStore) -> None:
    """Another writer's message where the first copy should be: the chain of keys refuses the rest.

    The sequence fence alone would let the second copy in after it.
    """
    copies = await _copies(store, 5)
    await store.append(evidence("stranger"))
    results = await store.append_in_order(copies, after=5)
    assert all(isinstance(r, ConcurrencyConflictError) for r in results)
    assert int((await store.stream_state("EVIDENCE"))["messages"]) == 6
