"""The event store's contract: idempotence, concurrency, atomic batches, ordered reads."""

from __future__ import annotations

import asyncio

import pytest
from support.events import evidence

from eventstore import ANY, MAX_BATCH, NO_STREAM, AppendResult, EventStore
from eventstore.errors import (
    BatchLimitError,
    ConcurrencyConflictError,
    InvalidHeaderError,
    JetStreamAPIError,
    SchemaViolationError,
)


async def _ids(store: EventStore, entity: str = "e1") -> list[str]:
    return [r.event.id async for r in store.read("t1", entity) if r.event is not None]


async def test_append_returns_sequence_and_version(store: EventStore) -> None:
    """A first append stores the event and reports its sequence as the entity's version."""
    result = await store.append(evidence("a1"))
    assert (result.sequence, result.version, result.duplicate) == (1, 1, False)
    assert result.subject == "rp.evidence.t1.e1"


async def test_duplicate_append_stores_once(store: EventStore) -> None:
    """Appending the same (source, id) twice stores it once and reports the duplicate."""
    first = await store.append(evidence("a1"))
    again = await store.append(evidence("a1"))
    assert again.duplicate is True
    assert again.sequence == first.sequence
    assert await _ids(store) == ["a1"]


async def test_same_id_from_two_sources_stores_both(store: EventStore) -> None:
    """Identity is (source, id): one producer cannot shadow another's event."""
    await store.append(evidence("a1", source="svc-a"))
    second = await store.append(evidence("a1", source="svc-b"))
    assert second.duplicate is False
    assert await _ids(store) == ["a1", "a1"]


async def test_expected_version_conflict_carries_expected_and_actual(store: EventStore) -> None:
    """A stale expected version raises a typed conflict with both versions."""
    first = await store.append(evidence("a1"))
    await store.append(evidence("a2"), expected_version=first.version)
    with pytest.raises(ConcurrencyConflictError) as info:
        await store.append(evidence("a3"), expected_version=first.version)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert await _ids(store) == ["a1", "a2"]


async def test_no_stream_expectation(store: EventStore) -> None:
    """NO_STREAM succeeds for a new entity and conflicts once it has events."""
    await store.append(evidence("a1"), expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyConflictError) as info:
        await store.append(evidence("a2"), expected_version=NO_STREAM)
    assert (info.value.expected, info.value.actual) == (0, 1)


async def test_retry_after_lost_ack_is_not_a_conflict(store: EventStore) -> None:
    """Resending an already stored event with the same expectation reports a duplicate."""
    base = await store.append(evidence("a1"))
    stored = await store.append(evidence("a2"), expected_version=base.version)
    retried = await store.append(evidence("a2"), expected_version=base.version)
    assert retried.duplicate is True
    assert retried.sequence == stored.sequence
    assert await _ids(store) == ["a1", "a2"]


async def test_expected_version_is_per_entity(store: EventStore) -> None:
    """Another entity's appends do not move this entity's version."""
    first = await store.append(evidence("a1", entity="e1"))
    await store.append(evidence("b1", entity="e2"))
    result = await store.append(evidence("a2", entity="e1"), expected_version=first.version)
    assert result.version == 3


async def test_atomic_batch_stores_all_in_order(store: EventStore) -> None:
    """A batch is stored contiguously and in order."""
    results = await store.append_batch([evidence(f"b{i}") for i in range(5)])
    assert [r.sequence for r in results] == [1, 2, 3, 4, 5]
    assert await _ids(store) == [f"b{i}" for i in range(5)]


async def test_atomic_batch_with_conflict_stores_nothing(store: EventStore) -> None:
    """A batch whose expected version is stale stores none of its events."""
    await store.append(evidence("a1"))
    await store.append(evidence("a2"))
    with pytest.raises(ConcurrencyConflictError) as info:
        await store.append_batch([evidence(f"b{i}") for i in range(3)], expected_version=1)
    assert info.value.actual == 2
    assert await _ids(store) == ["a1", "a2"]


async def test_atomic_batch_with_expected_version(store: EventStore) -> None:
    """A batch with the right expected version is stored."""
    first = await store.append(evidence("a1"))
    results = await store.append_batch(
        [evidence("b1"), evidence("b2")], expected_version=first.version
    )
    assert [r.sequence for r in results] == [2, 3]


@pytest.mark.parametrize(
    ("size", "message"),
    [(0, "1 to 1000"), (MAX_BATCH + 1, "1 to 1000")],
)
async def test_batch_size_caps(store: EventStore, size: int, message: str) -> None:
    """Batches outside 1..1000 events are refused before anything is sent."""
    with pytest.raises(BatchLimitError, match=message):
        await store.append_batch([evidence(f"b{i}") for i in range(size)])
    assert await _ids(store) == []


async def test_batch_refuses_repeated_ids(store: EventStore) -> None:
    """A batch holding the same (source, id) twice is refused before sending."""
    with pytest.raises(BatchLimitError, match="same"):
        await store.append_batch([evidence("b1"), evidence("b1")])


async def test_batch_with_invalid_event_sends_nothing(store: EventStore) -> None:
    """One invalid event in a batch stops the whole batch before sending."""
    bad = evidence("b2").model_copy(update={"data": {"pattern": "x", "severity": "extreme"}})
    with pytest.raises(SchemaViolationError):
        await store.append_batch([evidence("b1"), bad])
    assert await _ids(store) == []


async def test_read_is_ordered_and_filtered(store: EventStore) -> None:
    """An entity's events come back in order, without other entities' events."""
    for i in range(20):
        await store.append(evidence(f"x{i}", entity="e1" if i % 2 == 0 else "e2"))
    assert await _ids(store, "e1") == [f"x{i}" for i in range(0, 20, 2)]
    assert await _ids(store, "e2") == [f"x{i}" for i in range(1, 20, 2)]


async def test_read_from_version(store: EventStore) -> None:
    """Reading from a version skips the entity's earlier events."""
    results = [await store.append(evidence(f"x{i}")) for i in range(5)]
    got = [
        r.event.id async for r in store.read("t1", "e1", from_version=results[2].version) if r.event
    ]
    assert got == ["x2", "x3", "x4"]


async def test_read_unknown_entity_is_empty(store: EventStore) -> None:
    """An entity with no events reads as empty, without waiting."""
    assert await _ids(store, "nobody") == []


async def test_read_all_ranges(store: EventStore) -> None:
    """read_all honours from_seq and until_seq, inclusive."""
    for i in range(10):
        await store.append(evidence(f"x{i}", entity=f"e{i % 3}"))
    seqs = [r.sequence async for r in store.read_all(from_seq=3, until_seq=7)]
    assert seqs == [3, 4, 5, 6, 7]
    everything = [r.sequence async for r in store.read_all()]
    assert everything == list(range(1, 11))
    assert [r.sequence async for r in store.read_all(from_seq=11)] == []


async def test_append_many_reports_each_event_in_order(store: EventStore) -> None:
    """append_many stores valid events, reports invalid and duplicate ones, in input order."""
    await store.append(evidence("m1"))
    bad = evidence("m3").model_copy(update={"data": {"pattern": "Bad Pattern", "severity": "high"}})
    events = [evidence("m0"), evidence("m1"), bad, *(evidence(f"n{i}") for i in range(200))]
    results = await store.append_many(events)
    assert len(results) == len(events)
    assert not isinstance(results[0], Exception)
    assert not isinstance(results[1], Exception)
    assert results[1].duplicate is True
    assert isinstance(results[2], SchemaViolationError)
    assert all(not isinstance(r, Exception) and not r.duplicate for r in results[3:])
    assert len(await _ids(store)) == 202


async def test_append_many_makes_the_callers_results(store: EventStore) -> None:
    """With ``result=``, each stored event's result is what the caller makes of its fields."""
    first = await store.append(evidence("k1"))
    bad = evidence("k2").model_copy(update={"data": {"pattern": "Bad Pattern", "severity": "high"}})
    made: list[tuple[str, str, int, bool]] = []

    def result(stream: str, subject: str, sequence: int, duplicate: bool) -> int:  # noqa: FBT001
        made.append((stream, subject, sequence, duplicate))
        return -sequence if duplicate else sequence

    results = await store.append_many([evidence("k0"), evidence("k1"), bad], result=result)
    assert results[0] == first.sequence + 1
    assert results[1] == -first.sequence
    assert isinstance(results[2], SchemaViolationError)
    assert made == [
        ("EVIDENCE", first.subject, first.sequence + 1, False),
        ("EVIDENCE", first.subject, first.sequence, True),
    ]


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


async def test_read_reports_undecodable_message(store: EventStore) -> None:
    """A message written around the store reads back with its decode error, not dropped."""
    await store.client.nc.publish("rp.evidence.t1.e1", b"{not json")
    await store.client.nc.flush()
    await store.append(evidence("a1"))
    records = [r async for r in store.read("t1", "e1")]
    assert [r.event is None for r in records] == [True, False]
    assert records[0].error is not None
    assert records[0].payload == b"{not json"


async def test_any_is_the_default_expectation(store: EventStore) -> None:
    """ANY appends whatever the entity's version."""
    await store.append(evidence("a1"))
    assert (await store.append(evidence("a2"), expected_version=ANY)).version == 2


async def test_append_soon_settles_the_common_case(store: EventStore) -> None:
    """Started without waiting: the PubAck's future gives the append's result."""
    pending = store.append_soon(evidence("s1"), expected_version=NO_STREAM)
    assert pending is not None
    await pending.future
    result = pending.result()
    assert result is not None
    assert (result.sequence, result.subject, result.duplicate) == (1, "rp.evidence.t1.e1", False)
    again = store.append_soon(evidence("s1"))
    assert again is not None
    await again.future
    assert again.result() == AppendResult(result.stream, result.subject, 1, duplicate=True)


async def test_append_soon_leaves_a_conflict_to_append(store: EventStore) -> None:
    """A refused PubAck is not a result: append settles it, with its typed error."""
    await store.append(evidence("c1"))
    pending = store.append_soon(evidence("c2"), expected_version=NO_STREAM)
    assert pending is not None
    with pytest.raises(JetStreamAPIError):
        await pending.future
    assert pending.result() is None
    with pytest.raises(ConcurrencyConflictError):
        await store.append(evidence("c2"), expected_version=NO_STREAM)


async def test_append_soon_leaves_refused_events_and_headers_to_append(store: EventStore) -> None:
    """Nothing is sent for what append refuses; append raises the typed error, as ever."""
    invalid = evidence("bad", severity="extreme")
    bad_header = {"Nats-Msg-Id": "mine"}
    assert store.append_soon(invalid) is None
    assert store.append_soon(evidence("h1"), headers=bad_header) is None
    with pytest.raises(SchemaViolationError, match="severity"):
        await store.append(invalid)
    with pytest.raises(InvalidHeaderError):
        await store.append(evidence("h1"), headers=bad_header)
    assert await _ids(store) == []


async def test_subjects_are_read_past_the_servers_page_of_100000(store: EventStore) -> None:
    """The server lists at most 100,000 subjects per request; `subjects` reads every page."""
    stream, extra = store.config.stream_for("evidence"), 1234
    nc = store.client.nc
    for n in range(100_000 + extra):
        await nc.publish(f"rp.evidence.t{n % 3}.e{n}", b"{}")
    await nc.publish("rp.evidence.t0.e0", b"{}")  # a second message on one subject
    await nc.flush()
    for _ in range(200):  # the server stores what it was sent in order; wait for the last
        if (await store.stream_state(stream))["messages"] == 100_001 + extra:
            break
        await asyncio.sleep(0.05)
    found = await store.subjects(stream, "rp.evidence.>")
    assert len(found) == 100_000 + extra
    first, last = "rp.evidence.t0.e0", f"rp.evidence.t1.e{100_000 + extra - 1}"
    stored = store.config.stored
    assert (found[stored(first)], found[stored(last)]) == (2, 1)
    assert await store.count(stream, "rp.evidence.*.t2.*") == (100_000 + extra) // 3


async def test_a_message_read_and_fetched_directly_is_the_same(store: EventStore) -> None:
    """Stored time to the nanosecond, subject, bytes and headers agree between both reads."""
    await store.append(evidence("a1"))
    [read] = [raw async for batch in store.read_batches() for raw in batch]
    fetched = await store.client.direct_get(store.config.stream_for("evidence"), read.seq)
    assert fetched is not None
    assert (fetched.subject, fetched.stored_ns, fetched.data) == (
        read.subject,
        read.stored_ns,
        read.data,
    )
    assert read.header_block is not None
    assert read.parsed_headers is None, "not parsed until asked for"
    assert read.headers == fetched.headers == {"Nats-Msg-Id": "8:test-src:a1"}
    assert read.time == fetched.time
    assert read.time.tzinfo is not None
