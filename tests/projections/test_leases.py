"""Partition leases on a real server: shares, hand-over, expiry, and never two owners.

Every member has its own connection, as separate workers would. A shared
:class:`Registry` plays the partitions' users: it records every start and
stop, and counts a violation whenever a partition is started while another
member still runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from support.proxy import nats_proxy

from eventstore import EventStore
from eventstore.errors import ConcurrencyConflictError, TransientStoreError
from projections import LeaseConfigError, PartitionLeases, read_leases
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from riskpipe.server import NatsServer

TTL = timedelta(seconds=2)
P = 16


@dataclass
class Registry:
    """Who runs which partition now, across members, and what happened when."""

    running: dict[int, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    """(what, member, partition): start, stop, and why each stop came (lost, handed over)."""

    def holder(self, member: str) -> Holder:
        """The holder one member's leases drive."""
        return Holder(self, member)


@dataclass
class Holder:
    """A member's use of its partitions, recorded in the registry."""

    registry: Registry
    member: str
    on_stop: Callable[[int], object] | None = None

    def start(self, partition: int) -> None:
        """Start using ``partition``; someone else still using it is a violation."""
        other = self.registry.running.get(partition)
        if other is not None:
            self.registry.violations.append(f"{self.member} started {partition} run by {other}")
        self.registry.running[partition] = self.member
        self.registry.log.append(("start", self.member, partition))

    async def stop(self, partition: int, *, within: float | None) -> None:
        """Stop using ``partition`` (``within`` is set when the lease was lost, not handed over)."""
        self.registry.log.append(
            ("lost" if within is not None else "handed over", self.member, partition)
        )
        if self.on_stop is not None:
            result = self.on_stop(partition)
            if asyncio.iscoroutine(result):
                await result
        if self.registry.running.get(partition) == self.member:
            del self.registry.running[partition]
        self.registry.log.append(("stop", self.member, partition))


async def _connect(url: str) -> EventStore:
    config = topology_config(lease_ttl=TTL)
    return await EventStore.connect(url, schemas=build_schemas(), config=config, timeout=1.0)


@pytest.fixture
async def lease_store(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """A provisioned store whose lease bucket has a 2 s TTL."""
    store = await _connect(nats_server.url)
    await store.provision()
    try:
        yield store
    finally:
        await store.close()


@dataclass
class Member:
    """One running member: its leases, its stop switch, its task."""

    leases: PartitionLeases
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def leave(self) -> None:
        """Stop cleanly and wait until every lease is handed over."""
        self.stop.set()
        await self.task


@contextlib.asynccontextmanager
async def member(
    url: str,
    name: str,
    registry: Registry,
    *,
    cls: type[PartitionLeases] = PartitionLeases,
    **options: float,
) -> AsyncIterator[Member]:
    """A member with its own connection, running until the block ends."""
    store = await _connect(url)
    leases = cls(
        store,
        projection="risk",
        member=name,
        partitions=P,
        holder=registry.holder(name),
        **options,  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(leases.run(stop), name=f"member-{name}")
    try:
        yield Member(leases, stop, task)
    finally:
        stop.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        await store.close()


async def until(
    condition: Callable[[], bool], members: Iterable[Member], *, timeout: float
) -> None:
    """Wait until ``condition`` holds, re-checked whenever a member's leases change."""
    events = [m.leases.changed for m in members]
    async with asyncio.timeout(timeout):
        while True:
            for event in events:
                event.clear()
            if condition():
                return
            waits = [asyncio.create_task(event.wait()) for event in events]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()


def _settled(members: list[Member], names: set[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(m.leases.settled.is_set() and set(m.leases.members) == names for m in members)

    return check


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_members_share_sixteen_partitions_evenly(
    lease_store: EventStore, nats_server: NatsServer, count: int
) -> None:
    """1, 2 or 3 members own all 16 partitions between them, 16/W each (5 or 6 with 3)."""
    registry = Registry()
    names = {f"w{n}" for n in range(count)}
    async with contextlib.AsyncExitStack() as stack:
        members = [
            await stack.enter_async_context(member(nats_server.url, n, registry))
            for n in sorted(names)
        ]
        await until(_settled(members, names), members, timeout=15)
        shares = [m.leases.owned for m in members]
        assert sorted(p for s in shares for p in s) == list(range(P))
        assert {len(s) for s in shares} <= {P // count, P // count + 1}
        table = await read_leases(lease_store, "risk")
        assert {p: r.owner for p, r in table.items()} == dict(registry.running)
    assert not registry.violations


async def test_a_member_leaving_hands_its_partitions_over_at_once(
    lease_store: EventStore, nats_server: NatsServer
) -> None:
    """A clean stop deletes its leases (no waiting for the TTL) and the other takes all 16."""
    registry = Registry()
    async with (
        member(nats_server.url, "a", registry) as a,
        member(nats_server.url, "b", registry) as b,
    ):
        await until(_settled([a, b], {"a", "b"}), [a, b], timeout=15)
        await b.leave()
        table = await read_leases(lease_store, "risk")
        assert all(record.owner == "a" for record in table.values())
        assert "risk.member.b" not in await lease_store.kv("rp-leases").keys("risk.member.*")
        await until(lambda: a.leases.owned == frozenset(range(P)), [a], timeout=TTL.total_seconds())
    assert not [entry for entry in registry.log if entry[0] == "lost"]
    assert not registry.violations


class Crashing(PartitionLeases):
    """A member that can be made to crash: it stops renewing and never hands over."""

    async def _leave(self) -> None:
        """A crashed process leaves nothing behind on purpose."""


@pytest.mark.usefixtures("lease_store")
async def test_a_crashed_members_leases_expire_and_are_taken_over_within_the_ttl(
    nats_server: NatsServer,
) -> None:
    """A member that stops renewing without a word: its leases expire, the other takes all 16."""
    registry = Registry()
    async with member(nats_server.url, "a", registry) as a:
        async with member(nats_server.url, "b", registry, cls=Crashing) as b:
            await until(_settled([a, b], {"a", "b"}), [a, b], timeout=15)
            b.task.cancel()  # its process is gone: no renewal, no hand-over
            with contextlib.suppress(asyncio.CancelledError):
                await b.task
            registry.running = {p: m for p, m in registry.running.items() if m != "b"}
        # expiry (TTL), then a's next round (TTL/3, or a quarter of it while unsettled)
        await until(
            lambda: a.leases.owned == frozenset(range(P)), [a], timeout=2 * TTL.total_seconds()
        )
    assert not registry.violations


class Alone(PartitionLeases):
    """A member that never sees the others: every one of them wants every partition."""

    async def _live_members(self) -> list[str]:
        return [self.member]


@pytest.mark.usefixtures("lease_store")
async def test_racing_members_never_give_a_partition_two_owners(nats_server: NatsServer) -> None:
    """Three members each wanting all 16 at once: compare-and-set gives each to one of them."""
    registry = Registry()
    async with (
        member(nats_server.url, "a", registry, cls=Alone) as a,
        member(nats_server.url, "b", registry, cls=Alone) as b,
        member(nats_server.url, "c", registry, cls=Alone) as c,
    ):
        members = (a, b, c)
        await until(lambda: len(registry.running) == P, members, timeout=10)
        owned = [m.leases.owned for m in members]
        assert sum(len(s) for s in owned) == P
        assert frozenset().union(*owned) == frozenset(range(P))
    assert not registry.violations


async def test_two_creates_of_one_key_cannot_both_succeed(lease_store: EventStore) -> None:
    """Of 20 concurrent creates of one lease key (also over a delete marker), exactly one wins."""
    kv = lease_store.kv("rp-leases")
    for attempt in range(2):
        results = await asyncio.gather(
            *(kv.create("risk.partition.0", f"{n}".encode()) for n in range(20)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, int)]
        assert len(won) == 1, f"attempt {attempt}: {results}"
        assert all(isinstance(r, ConcurrencyConflictError) for r in results if r not in won)
        await kv.delete("risk.partition.0", revision=won[0])


@pytest.mark.slow
async def test_a_member_that_cannot_renew_stops_before_its_lease_expires(
    lease_store: EventStore, nats_server: NatsServer
) -> None:
    """Cut off from the server, a member stops each partition while the server still has its lease.

    The other member then takes the partitions over only after they were
    stopped: never two users of one partition.
    """
    registry = Registry()
    still_held: list[bool] = []

    async def check_server(partition: int) -> None:
        entry = await lease_store.kv("rp-leases").get(f"risk.partition.{partition}")
        still_held.append(entry is not None and b'"owner":"b"' in entry.value)

    async with (
        nats_proxy(nats_server.url) as proxy,
        member(nats_server.url, "a", registry) as a,
    ):
        store_b = await _connect(proxy.url)
        holder = registry.holder("b")
        holder.on_stop = check_server
        b_leases = PartitionLeases(
            store_b, projection="risk", member="b", partitions=P, holder=holder
        )
        b_stop = asyncio.Event()
        b_task = asyncio.create_task(b_leases.run(b_stop))
        b = Member(b_leases, b_stop, b_task)
        try:
            await until(_settled([a, b], {"a", "b"}), [a, b], timeout=15)
            theirs = b.leases.owned
            proxy.blackholed = True
            await until(lambda: not b.leases.owned, [b], timeout=TTL.total_seconds())
            await until(
                lambda: a.leases.owned == frozenset(range(P)), [a], timeout=3 * TTL.total_seconds()
            )
        finally:
            b_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await b_task
            await store_b.close()
    assert len(still_held) == len(theirs)
    assert {p for what, m, p in registry.log if what == "lost" and m == "b"} == theirs
    assert all(still_held), "b stopped a partition only after the server let its lease go"
    assert not registry.violations


async def test_a_bucket_without_ttl_is_refused(nats_server: NatsServer) -> None:
    """Leases in a bucket that never expires entries are refused with the reason."""
    store = await EventStore.connect(
        nats_server.url, schemas=build_schemas(), config=topology_config()
    )
    try:
        await store.client.api(
            "STREAM.CREATE.KV_rp-leases",
            {"name": "KV_rp-leases", "subjects": ["$KV.rp-leases.>"], "max_msgs_per_subject": 1,
             "allow_direct": True},
        )  # fmt: skip
        leases = PartitionLeases(
            store, projection="risk", member="a", partitions=P, holder=Registry().holder("a")
        )
        with pytest.raises(LeaseConfigError, match="no max_age"):
            await leases.run(asyncio.Event())
    finally:
        await store.close()


@pytest.mark.usefixtures("lease_store")
async def test_members_expected_together_wait_for_each_other_and_hand_nothing_over(
    nats_server: NatsServer,
) -> None:
    """The first of two expected members takes nothing until the second is live; then 8 each.

    No partition is handed over: each took its share at once.
    """
    registry = Registry()
    together = {"expected": 2, "gather_seconds": 60.0}
    async with member(nats_server.url, "a", registry, **together) as a:
        kv = a.leases.kv
        async with asyncio.timeout(10):
            while not await kv.keys("risk.member.*"):  # noqa: ASYNC110 - a's own first write
                await asyncio.sleep(0.05)
        assert not a.leases.owned, "a waits for b before taking anything"
        async with member(nats_server.url, "b", registry, **together) as b:
            await until(_settled([a, b], {"a", "b"}), [a, b], timeout=15)
            assert sorted(len(m.leases.owned) for m in (a, b)) == [8, 8]
            before_leaving = list(registry.log)
    assert [what for what, _, _ in before_leaving] == ["start"] * P, "none moved"
    assert not registry.violations


@pytest.mark.usefixtures("lease_store")
async def test_a_member_expecting_others_that_never_come_takes_everything_after_the_wait(
    nats_server: NatsServer,
) -> None:
    """Expected members missing: after ``gather_seconds`` the member takes all 16 alone."""
    registry = Registry()
    async with member(nats_server.url, "a", registry, expected=3, gather_seconds=0.3) as a:
        await until(lambda: a.leases.owned == frozenset(range(P)), [a], timeout=15)
    assert not registry.violations


class TtlWatched(PartitionLeases):
    """A member that says when its read of the bucket's TTL failed and is tried again."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ttl_retried = asyncio.Event()

    def _ttl_retry(self, error: TransientStoreError, attempt: int) -> None:
        super()._ttl_retry(error, attempt)
        self.ttl_retried.set()


async def test_a_member_reads_the_ttl_again_while_the_server_does_not_answer(
    lease_store: EventStore, nats_server: NatsServer
) -> None:
    """The first read of the bucket's TTL gets no answer: read again, then the member joins."""
    assert lease_store.config.election_window.total_seconds() > 0
    registry = Registry()
    async with nats_proxy(nats_server.url) as proxy:
        store = await _connect(proxy.url)
        leases = TtlWatched(
            store, projection="risk", member="a", partitions=P, holder=registry.holder("a")
        )
        stop = asyncio.Event()
        proxy.blackholed = True
        task = asyncio.create_task(leases.run(stop))
        try:
            async with asyncio.timeout(10):
                await leases.ttl_retried.wait()
            assert not task.done()
            proxy.blackholed = False
            await until(
                lambda: leases.owned == frozenset(range(P)),
                [Member(leases, stop, task)],
                timeout=20,
            )
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await task
            await store.close()
    assert not registry.violations
