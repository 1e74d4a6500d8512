"""The ordered reader behind read/read_all: many batches, filters, ranges, early stops."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

from support.events import evidence

from eventstore._jetstream._reader import read_range

if TYPE_CHECKING:
    from eventstore import EventStore


async def _publish(store: EventStore, count: int, entities: int) -> None:
    events = [evidence(f"r{i}", entity=f"e{i % entities}", minute=i) for i in range(count)]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def test_reads_across_many_batches_in_order(store: EventStore) -> None:
    """A read spanning several pull batches yields every sequence once, in order."""
    await _publish(store, 2600, 3)
    seqs = [r.sequence async for r in store.read_all()]
    assert seqs == list(range(1, 2601))
    ranged = [r.sequence async for r in store.read_all(from_seq=1000, until_seq=2100)]
    assert ranged == list(range(1000, 2101))


async def test_filtered_read_yields_only_matches(store: EventStore) -> None:
    """A subject filter over a long stream yields only that entity's events, in order."""
    await _publish(store, 2200, 100)
    ids = [r.event.id async for r in store.read("t1", "e7") if r.event is not None]
    assert ids == [f"r{i}" for i in range(7, 2200, 100)]
    assert [r async for r in store.read_all(filter_subject="rp.evidence.t1.nobody")] == []


async def test_stopping_early_deletes_the_consumer(store: EventStore) -> None:
    """Closing the reader before its end leaves no consumer behind on the stream."""
    await _publish(store, 1500, 2)
    reading = read_range(store.client, "EVIDENCE", filter_subject=None, start_seq=1, end_seq=1500)
    async with aclosing(reading) as records:
        async for raw in records:
            if raw.seq == 700:
                break
    state = await store.stream_state(store.config.stream_for("evidence"))
    assert state["consumer_count"] == 0


async def test_read_of_an_empty_range_is_empty(store: EventStore) -> None:
    """A range that starts after the last event yields nothing and creates no consumer."""
    await _publish(store, 5, 1)
    assert [r async for r in store.read_all(from_seq=6)] == []
    state = await store.stream_state(store.config.stream_for("evidence"))
    assert state["consumer_count"] == 0


async def test_batches_hold_what_read_all_reads(store: EventStore) -> None:
    """Batched raw reading yields the same messages, in order; decoded they are read_all's."""
    await _publish(store, 2600, 7)
    batches = [b async for b in store.read_batches(from_seq=5, until_seq=2500)]
    raws = [raw for batch in batches for raw in batch]
    assert len(batches) > 1
    assert [raw.seq for raw in raws] == list(range(5, 2501))
    decoded = [store.recorded(raw) for raw in raws]
    assert decoded == [r async for r in store.read_all(from_seq=5, until_seq=2500)]
    only = [
        raw.seq
        async for batch in store.read_batches(
            filter_subject=store.config.stored_subject("evidence", "t1", "e3")
        )
        for raw in batch
    ]
    assert only == list(range(4, 2601, 7))


async def test_stopping_batches_early_deletes_the_consumer(store: EventStore) -> None:
    """Closing the batched reader before its end leaves no consumer behind either."""
    await _publish(store, 2600, 2)
    async with aclosing(store.read_batches()) as batches:
        async for batch in batches:
            assert batch
            break
    state = await store.stream_state(store.config.stream_for("evidence"))
    assert state["consumer_count"] == 0
