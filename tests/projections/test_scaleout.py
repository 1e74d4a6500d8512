"""Scaling out under load: workers join, leave and crash while evidence keeps arriving.

Real worker processes share the 16 partitions through leases on a real
server, while a publisher appends evidence without pause: many entities and a
few hot ones with many events each. Mid-stream a worker joins, one is killed
with -9 and replaced, and one leaves with SIGTERM. At the end every evidence
has exactly one assessment, in per-entity order, and the count is what was
published. The lease bucket's TTL is 3 s, so a crash moves partitions in
about 4 s rather than 20.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.nats import QUICK_LEASES
from support.pipeline import WorkerProcess, check_invariants, read_streams, wait_for_messages

from projections import read_leases

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import CloudEvent, EventStore
    from projections import LeaseRecord
    from riskpipe.server import NatsServer

ENV = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_DRAIN_TIMEOUT_SECONDS": "5",
    **QUICK_LEASES,
}
RATE = 250
"""Evidence events published per second."""
BATCH = 25
ENTITIES = 250
HOT = 3
"""Entities that get every fifth event between them: about 17 a second each."""


def _event(n: int) -> CloudEvent:
    entity = f"hot{n % HOT}" if n % 5 == 0 else f"e{(n * 37) % ENTITIES}"
    return evidence(f"s{n}", entity=entity, minute=n)


@dataclass
class Publisher:
    """Appends evidence in the background at :data:`RATE` until told to stop."""

    store: EventStore
    published: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish batch after batch, paced by the clock; every append must be stored."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            batch = [_event(self.published + k) for k in range(BATCH)]
            failed = [r for r in await self.store.append_many(batch) if isinstance(r, Exception)]
            assert not failed, failed[:3]
            self.published += BATCH
            due = max(due + BATCH / RATE, loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due - loop.time()):
                    await stop.wait()


async def _risk(store: EventStore) -> int:
    return int((await store.stream_state("RISK"))["messages"])


async def _leases_until(
    store: EventStore, good: Callable[[dict[int, LeaseRecord]], bool], timeout: float
) -> dict[int, LeaseRecord]:
    """The partitions' leases once ``good`` holds for them."""
    async with asyncio.timeout(timeout):
        while not good(leases := await read_leases(store, "risk")):  # noqa: ASYNC110 - leases change on the workers' rounds
            await asyncio.sleep(0.2)
    return leases


def _held_by(members: set[str]) -> Callable[[dict[int, LeaseRecord]], bool]:
    """Every partition has a lease, and only ``members`` hold them."""

    def good(leases: dict[int, LeaseRecord]) -> bool:
        return len(leases) == 16 and {r.owner for r in leases.values()} <= members

    return good


async def _start(workers: list[WorkerProcess]) -> None:
    """Start the workers side by side; each returns once it holds its share."""
    await asyncio.gather(*(asyncio.to_thread(w.start, 60.0) for w in workers))


def _member(worker: WorkerProcess) -> str:
    return str(worker.logged("leases.joined")["member"])


async def _stuck(store: EventStore, total: int, workers: list[WorkerProcess]) -> str:
    """What the consumers, the leases and the live workers say when assessments stall."""
    lines = [f"RISK holds {await _risk(store)} of {total}; DLQ {await store.count('DLQ', '>')}"]
    streams = await read_streams(store)
    missing = [
        (seq, streams.evidence_subjects[seq])
        for seq in streams.evidence
        if seq not in streams.assessments and seq not in streams.dead_letters
    ]
    lines.append(f"evidence with no effect: {missing[:20]}")
    for p in range(16):
        info = await store.client.api(f"CONSUMER.INFO.EVIDENCE.risk-{p}")
        lines.append(
            f"risk-{p}: pending {info.get('num_pending')} ack_pending {info.get('num_ack_pending')}"
            f" waiting {info.get('num_waiting')} redelivered {info.get('num_redelivered')}"
        )
    leases = await read_leases(store, "risk")
    lines.append(f"leases: {sorted((p, r.owner) for p, r in leases.items())}")
    for worker in workers:
        noisy = [line for line in worker.lines if line.get("level") in {"warning", "error"}]
        lines += [f"{worker.proc.pid if worker.proc else None}: {line}" for line in noisy[-10:]]
    return "\n".join(lines)


async def _wait_for_all(store: EventStore, total: int, workers: list[WorkerProcess]) -> None:
    """Wait for an assessment of every evidence; say what stalls if they do not all come."""
    try:
        await wait_for_messages(store, "RISK", total, timeout=90)
    except TimeoutError:
        raise AssertionError(await _stuck(store, total, workers)) from None


@pytest.mark.slow
@pytest.mark.parametrize("initial", [1, 2, 3], ids=lambda n: f"{n}-workers")
async def test_join_crash_and_leave_mid_stream_keep_one_assessment_each_in_order(
    nats_server: NatsServer, quick_lease_store: EventStore, initial: int
) -> None:
    """Exactly one assessment per evidence, each entity in order, through join, kill -9, SIGTERM."""
    store = quick_lease_store
    ttl = store.config.lease_ttl.total_seconds()
    workers = [WorkerProcess(nats_server.url, env=ENV) for _ in range(initial)]
    await _start(workers)
    publisher = Publisher(store)
    stop = asyncio.Event()
    publishing = asyncio.create_task(publisher.run(stop), name="publisher")
    began = time.monotonic()
    faults: dict[str, int] = {}
    try:
        await wait_for_messages(store, "RISK", 300)

        faults["join"] = await _risk(store)
        joined = WorkerProcess(nats_server.url, env=ENV)
        await _start([joined])  # it holds its share: the others handed it over
        workers.append(joined)
        assert _member(joined) in {r.owner for r in (await read_leases(store, "risk")).values()}

        faults["kill -9"] = await _risk(store)
        crashed = workers.pop(0)
        crashed.kill()
        killed = time.monotonic()
        replacement = WorkerProcess(nats_server.url, env=ENV)
        await _start([replacement])
        workers.append(replacement)
        # the crashed worker's leases run out; the live ones take its partitions
        await _leases_until(store, _held_by({_member(w) for w in workers}), 3 * ttl + 20)
        moved = time.monotonic() - killed

        faults["SIGTERM"] = await _risk(store)
        leaving = workers.pop(0)
        assert await asyncio.to_thread(leaving.stop, 60) == 0
        await _leases_until(store, _held_by({_member(w) for w in workers}), 2 * ttl + 10)

        await wait_for_messages(store, "RISK", await _risk(store) + RATE)  # a while longer
    finally:
        stop.set()
        await publishing
    total = publisher.published
    await _wait_for_all(store, total, workers)
    codes = await asyncio.gather(*(asyncio.to_thread(w.stop, 60) for w in workers))
    took = time.monotonic() - began

    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.evidence) == total
    assert sum(len(a) for a in streams.assessments.values()) == total
    assert min(len(streams.by_entity[f"rp.risk.t1.hot{h}"]) for h in range(HOT)) >= total // 20
    for fault, at in faults.items():
        assert 0 < at < total, f"{fault} at {at} assessments of {total}: not mid-stream"
    assert codes == [0] * len(workers)
    assert await read_leases(store, "risk") == {}, "the last workers handed everything over"
    print(  # noqa: T201 - the figures, with -s
        f"\n{initial} worker(s): {total} evidence in {took:.1f} s; faults at {faults};"
        f" the crashed worker's partitions moved in {moved:.1f} s (TTL {ttl:.0f} s)"
    )
