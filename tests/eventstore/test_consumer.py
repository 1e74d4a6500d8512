"""Durable consumers: pull requests kept topped up, deliveries handed out as they arrive."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from support.events import evidence

from eventstore import ConsumerSettings
from eventstore.errors import NotProvisionedError

if TYPE_CHECKING:
    from eventstore import EventStore

TIMEOUT = 5.0


async def test_fetch_returns_what_arrived_without_waiting_for_a_full_batch(
    store: EventStore,
) -> None:
    """Three messages and a batch of 256: they come back long before the fetch would expire."""
    await store.append_many([evidence(f"f{i}") for i in range(3)])
    consumer = store.consumer("fetcher")
    await consumer.ensure(ConsumerSettings(ack_wait=30))
    try:
        started = time.monotonic()
        got = []
        while len(got) < 3:
            got += await consumer.fetch(256, TIMEOUT)
        assert time.monotonic() - started < TIMEOUT / 2
        assert [d.stream_seq for d in got] == [1, 2, 3]
        for delivery in got:
            await consumer.ack(delivery)
    finally:
        await consumer.close()


async def test_messages_stored_while_waiting_are_delivered_to_the_waiting_fetch(
    store: EventStore,
) -> None:
    """A fetch on an idle stream picks up what is stored meanwhile, without a new pull."""
    consumer = store.consumer("waiter")
    await consumer.ensure(ConsumerSettings(ack_wait=30))
    try:
        waiting = asyncio.create_task(consumer.fetch(256, TIMEOUT))
        await asyncio.sleep(0.2)
        await store.append(evidence("late"))
        got = await waiting
        assert [d.stream_seq for d in got] == [1]
        assert got[0].num_delivered == 1
        await consumer.ack(got[0])
        assert await consumer.fetch(256, 0.3) == []  # nothing else, and no error
    finally:
        await consumer.close()


async def test_closing_releases_deliveries_never_handed_out(store: EventStore) -> None:
    """Arrived but unfetched messages are released at close, not held until the ack wait."""
    await store.append_many([evidence(f"r{i}") for i in range(10)])
    first = store.consumer("releaser")
    await first.ensure(ConsumerSettings(ack_wait=30))
    got = await first.fetch(1, TIMEOUT)
    await first._pull(9, TIMEOUT)  # noqa: SLF001 - one pull for the other nine, then take fewer
    async with asyncio.timeout(TIMEOUT):
        while len(first._received) < 9:  # noqa: ASYNC110, SLF001 - until all nine are here
            await asyncio.sleep(0.01)
    got += await first.fetch(3, TIMEOUT)
    assert [d.stream_seq for d in got] == [1, 2, 3, 4]
    for delivery in got:
        await first.ack(delivery)
    await first.close()
    second = store.consumer("releaser")
    try:
        rest = []
        started = time.monotonic()
        while len(rest) < 6:
            rest += await second.fetch(256, TIMEOUT)
        assert time.monotonic() - started < TIMEOUT  # not the 30 s ack wait
        assert [d.stream_seq for d in rest] == [5, 6, 7, 8, 9, 10]
        assert {d.num_delivered for d in rest} == {2}, "released, then delivered again"
    finally:
        await second.close()


async def test_a_consumer_deleted_while_fetching_is_reported_as_not_provisioned(
    store: EventStore,
) -> None:
    """The server ends a waiting pull with 409 Consumer Deleted: a typed error, not a hang."""
    consumer = store.consumer("doomed")
    await consumer.ensure(ConsumerSettings(ack_wait=30))
    try:
        waiting = asyncio.create_task(consumer.fetch(256, TIMEOUT))
        await asyncio.sleep(0.2)
        await store.client.api(f"CONSUMER.DELETE.{store.config.stream_for('evidence')}.doomed")
        with pytest.raises(NotProvisionedError, match="consumer doomed was deleted"):
            await waiting
    finally:
        await consumer.close()
