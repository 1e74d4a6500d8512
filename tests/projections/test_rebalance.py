"""Workers share the partitions through leases: join, crash and leave, with real processes."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, read_streams, wait_for_messages

from projections import read_leases

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import EventStore
    from riskpipe.server import NatsServer

FAST = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_DRAIN_TIMEOUT_SECONDS": "5",
}


async def _publish(store: EventStore, prefix: str, count: int) -> None:
    events = [evidence(f"{prefix}{i}", entity=f"e{i % 40}", minute=i) for i in range(count)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]


async def _owners(store: EventStore) -> collections.Counter[str]:
    return collections.Counter(
        record.owner for record in (await read_leases(store, "risk")).values()
    )


async def _until(
    store: EventStore, good: Callable[[collections.Counter[str]], bool], timeout: float
) -> tuple[collections.Counter[str], float]:
    """The lease owners once ``good`` holds, and how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not good(owners := await _owners(store)):  # noqa: ASYNC110 - leases change on the workers' rounds
            await asyncio.sleep(0.2)
    return owners, time.monotonic() - started


@pytest.mark.slow
async def test_three_workers_share_sixteen_partitions_and_survive_a_crash_and_a_leave(
    nats_server: NatsServer, store: EventStore
) -> None:
    """5 or 6 partitions each; a crash, then a leave, and still one assessment each, in order.

    After kill -9 the other two own all 16 within the TTL plus a few seconds;
    after a SIGTERM the last owns all 16 without waiting for the TTL.
    """
    ttl = store.config.lease_ttl.total_seconds()
    workers = [WorkerProcess(nats_server.url, env=FAST) for _ in range(3)]
    for worker in workers:
        await asyncio.to_thread(worker.start, 60.0)
    await _publish(store, "a", 600)
    owners, _ = await _until(
        store, lambda o: sum(o.values()) == 16 and sorted(o.values()) == [5, 5, 6], 4 * ttl
    )
    assert len(owners) == 3

    crashed = workers.pop(0)
    crashed.kill()
    await _publish(store, "b", 600)
    owners, took = await _until(store, lambda o: sum(o.values()) == 16 and len(o) == 2, ttl + 10)
    await _until(store, lambda o: sorted(o.values()) == [8, 8], ttl)  # then rebalanced
    print(f"\nafter kill -9: the 2 others own all 16 partitions in {took:.1f} s (TTL {ttl:.0f} s)")  # noqa: T201 - the figure, with -s

    leaving = workers.pop(0)
    assert await asyncio.to_thread(leaving.stop, 60) == 0
    owners, took = await _until(store, lambda o: sum(o.values()) == 16 and len(o) == 1, ttl)
    print(f"after SIGTERM: the last owns all 16 in {took:.1f} s")  # noqa: T201 - the figure, with -s
    assert took < ttl, "a clean leave hands over without waiting for the TTL"

    await _publish(store, "c", 300)
    await wait_for_messages(store, "RISK", 1500, timeout=120)
    assert await asyncio.to_thread(workers[0].stop, 60) == 0
    streams = await read_streams(store)
    check_invariants(streams)
    assert sum(len(a) for a in streams.assessments.values()) == 1500
    assert await read_leases(store, "risk") == {}, "the last worker handed everything over"
