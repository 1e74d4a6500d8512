"""A range read whose consumer is lost on the way resumes after its last message."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.events import evidence

if TYPE_CHECKING:
    from eventstore import EventStore


async def _delete_readers(store: EventStore, stream: str) -> int:
    names = (await store.client.api(f"CONSUMER.NAMES.{stream}")).get("consumers") or []
    readers = [name for name in names if name.startswith("rd_")]
    for name in readers:
        await store.client.api(f"CONSUMER.DELETE.{stream}.{name}")
    return len(readers)


async def test_a_read_whose_consumer_vanishes_still_yields_every_message_once(
    store: EventStore,
) -> None:
    """As when a cluster moves the read's consumer: the pull is answered 503, the read goes on.

    The consumer is deleted after the first batch, so the server answers
    the next pull with "no responders"; the read makes a new consumer after
    the last message it yielded, and the caller sees each message once, in
    order.
    """
    events = [evidence(f"e{n}", entity=f"ent-{n % 7}") for n in range(3000)]
    await store.append_many(events)
    stream = store.config.stream_for("evidence")
    seen: list[int] = []
    deleted = 0
    async for batch in store.read_batches(stream=stream):
        seen.extend(raw.seq for raw in batch)
        if not deleted:
            deleted = await _delete_readers(store, stream)
    assert deleted == 1
    assert seen == list(range(1, 3001))


async def test_an_entitys_read_resumes_too(store: EventStore) -> None:
    """``read`` (one entity's events) goes through the same resuming read."""
    await store.append_many([evidence(f"e{n}", entity="hot") for n in range(2500)])
    stream = store.config.stream_for("evidence")
    seen: list[int] = []
    async for rec in store.read("t1", "hot", category="evidence"):
        seen.append(rec.sequence)
        if len(seen) == 1:
            assert await _delete_readers(store, stream) == 1
    assert seen == list(range(1, 2501))
