"""Partition ownership by leases in a KV bucket: compare-and-set, a TTL, a local deadline.

Each worker (a *member*) keeps a membership key ``<projection>.member.<id>``
alive, and holds the partitions it owns as lease keys
``<projection>.partition.<p>`` whose value names it. The bucket's ``max_age``
is the TTL: the server removes a key nobody rewrote within it, so a crashed
member's keys vanish by themselves, and no clock but the server's decides
when. Every write of a lease key is a compare-and-set (create: the key must be
absent or deleted; renew and release: on the revision this member wrote last),
so two members never both hold one partition on the server.

From the live members, :func:`~projections._assignment.assign` gives each
member its target share. Every round (a third of the TTL) a member renews its
membership and the leases it should keep, hands over the ones it should not
(stops using the partition, then deletes the key) and acquires the free ones it
should own.

The server's word is not enough for the member that holds a lease: if its
renewals fail (a paused process, a lost connection), it cannot learn that the
lease expired. So it keeps a local deadline per lease, by the monotonic clock:
the time it *sent* its last successful write, plus the TTL, minus a safety
margin. The server wrote the key after that, so the key lives at least until
``sent + TTL``; at the deadline the member stops using the partition, before
anyone else can take it over. A member paused past its deadline (SIGSTOP) stops
using it as soon as it runs again, and whatever it was writing meanwhile is
stopped by the fence on the entity's risk subject, not by the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eventstore import validate_token
from eventstore.errors import ConcurrencyConflictError, TransientStoreError
from projections._assignment import assign
from projections.errors import LeaseConfigError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from eventstore import EventStore, KeyValue

__all__ = ["LeaseRecord", "PartitionHolder", "PartitionLeases", "read_leases", "read_members"]

_log = structlog.get_logger(__name__)

ROUNDS_PER_TTL = 3
"""Renewals per TTL: a lease survives two failed renewals in a row."""
MARGIN_FRACTION = 0.2
"""Of the TTL, how long before the server could expire a lease its holder stops using it."""
_CATCH_UP = 4
"""While a member's target is not what it holds, it looks this many times per round."""
_GATHER_POLL = 0.1
"""Seconds between looks at the members while waiting for those expected to join together."""


class LeaseRecord(BaseModel):
    """What a lease or membership key holds: who, and until when as the writer saw it.

    ``expires_at`` (Unix time) is for people reading the bucket; the server's
    ``max_age`` decides when the key is gone, whatever the writer's clock said.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    owner: str = Field(min_length=1, max_length=128)
    expires_at: float


class PartitionHolder(Protocol):
    """What uses the partitions: told to start one it acquired and to stop one it lost."""

    def start(self, partition: int) -> None:
        """Start consuming ``partition`` (the lease is held)."""

    async def stop(self, partition: int, *, within: float | None) -> None:
        """Stop consuming ``partition`` now; return when nothing of it runs any more.

        ``within``: seconds left before another member may take the partition (a
        lost lease): finish or give up in-flight work by then. ``None`` (a hand-over,
        the lease kept alive meanwhile): let in-flight work finish.
        """


@dataclass(eq=False)
class _Lease:
    revision: int
    deadline: asyncio.TimerHandle | None = None
    handing_over: bool = False


@dataclass
class _Stops:
    """Partitions being stopped by the holder: not acquired again until it returns."""

    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    def busy(self, partition: int) -> bool:
        task = self.tasks.get(partition)
        return task is not None and not task.done()

    async def wait(self) -> None:
        pending = [t for t in self.tasks.values() if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


class PartitionLeases:
    """One member's leases on a projection's partitions, kept by :meth:`run`.

    ``owned`` is the set of partitions the holder may use now; ``changed`` is
    set whenever it, ``members`` or ``settled`` changes (clear it after reading). The holder is told
    ``start(p)`` right after a lease is acquired and ``stop(p)`` as soon as it
    must stop: before a hand-over deletes the key, or at the local deadline.

    ``round_seconds`` makes rounds more frequent than a third of the TTL (never
    less frequent): members see each other join and leave sooner, at the price
    of a write per lease each round. ``expected`` members started together
    (the processes of a batch run) wait, up to ``gather_seconds``, until that
    many are live before the first round: each then takes its share at once,
    instead of the first one taking every partition and handing most over as
    the others appear. A batch run uses both.
    """

    def __init__(  # noqa: PLR0913 - what to lease, for whom, who uses it, how often; keyword-only
        self,
        store: EventStore,
        *,
        projection: str,
        member: str,
        partitions: int,
        holder: PartitionHolder,
        wall_clock: Callable[[], float] = time.time,
        round_seconds: float | None = None,
        expected: int = 1,
        gather_seconds: float = 0.0,
    ) -> None:
        validate_token(projection, what="projection")
        validate_token(member, what="member id")
        self.store = store
        self.kv: KeyValue = store.kv(store.config.lease_bucket)
        self.projection = projection
        self._log = _log.bind(projection=projection)
        self.member = member
        self.partitions = partitions
        self.holder = holder
        self.members: tuple[str, ...] = ()
        """The live members as the last round saw them."""
        self.changed = asyncio.Event()
        self.settled = asyncio.Event()
        """Set while this member holds exactly its target share."""
        self._wall = wall_clock
        self._round_seconds = round_seconds
        self._expected = expected
        self._gather_seconds = gather_seconds
        self._ttl = 0.0
        self._held: dict[int, _Lease] = {}
        self._stops = _Stops()
        self._handovers: set[asyncio.Task[None]] = set()

    @property
    def owned(self) -> frozenset[int]:
        """The partitions this member holds and may use (none being handed over)."""
        return frozenset(p for p, lease in self._held.items() if not lease.handing_over)

    @property
    def ttl(self) -> float:
        """The lease TTL in seconds (the bucket's ``max_age``), known once :meth:`run` started."""
        return self._ttl

    def _key(self, partition: int) -> str:
        return f"{self.projection}.partition.{partition}"

    def _record(self) -> bytes:
        return (
            LeaseRecord(owner=self.member, expires_at=self._wall() + self._ttl)
            .model_dump_json()
            .encode()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep membership and leases until ``stop``; then hand every partition over.

        Raises:
            LeaseConfigError: the lease bucket keeps entries for ever (no ``max_age``).
            TransientStoreError: the bucket could not be read within the store's
                election window.
        """
        read = await self.store.retry_transient(self._read_ttl, on_retry=self._ttl_retry, stop=stop)
        if read is None:
            return  # stopped first: nothing joined, nothing held
        (ttl,) = read
        if ttl is None:
            raise LeaseConfigError(self.kv.bucket)
        self._ttl = ttl.total_seconds()
        interval = self._ttl / ROUNDS_PER_TTL
        if self._round_seconds is not None:
            interval = min(interval, self._round_seconds)
        self._log.info("leases.joined", member=self.member, ttl=self._ttl)
        try:
            if self._expected > 1:
                await self._gather(stop)
            while not stop.is_set():
                await self._round_logged()
                pause = interval if self.settled.is_set() else interval / _CATCH_UP
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await stop.wait()
        finally:
            await self._leave()

    async def _gather(self, stop: asyncio.Event) -> None:
        """Wait until ``expected`` members are live, ``gather_seconds`` at most, or ``stop``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._gather_seconds
        registered = False
        members: list[str] = [self.member]
        while not stop.is_set():
            try:
                if not registered:
                    await self.kv.put(self._member_key(self.member), self._record())
                    registered = True
                members = await self._live_members()
            except TransientStoreError as exc:
                self._log.warning("leases.round_failed", member=self.member, error=str(exc))
            left = deadline - loop.time()
            if len(members) >= self._expected or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(_GATHER_POLL, left)):
                    await stop.wait()
        self._log.info(
            "leases.gathered",
            member=self.member,
            members=len(members),
            expected=self._expected,
            waited=round(loop.time() - started, 2),
        )

    async def _read_ttl(self) -> tuple[timedelta | None]:
        return (await self.kv.ttl(),)  # a tuple: a bucket without TTL is not "stopped"

    def _ttl_retry(self, error: TransientStoreError, attempt: int) -> None:
        self._log.warning(
            "leases.ttl_unread", member=self.member, error=str(error), attempt=attempt
        )

    async def _round_logged(self) -> None:
        try:
            await self._round()
        except TransientStoreError as exc:
            # the leases' own deadlines stop what can no longer be renewed
            self._log.warning("leases.round_failed", member=self.member, error=str(exc))

    async def _round(self) -> None:
        await self.kv.put(self._member_key(self.member), self._record())
        members = tuple(await self._live_members())
        if members != self.members:
            self.members = members
            self.changed.set()
        target = assign(self.members, self.partitions)[self.member]
        for partition, lease in list(self._held.items()):
            if lease.handing_over:
                continue
            if partition in target:
                await self._renew(partition, lease)
            else:
                self._hand_over(partition, lease)
        for partition in sorted(target - self._held.keys()):
            await self._acquire(partition)
        settled = self.owned == target
        if settled != self.settled.is_set():
            (self.settled.set if settled else self.settled.clear)()
            self.changed.set()

    def _member_key(self, member: str) -> str:
        return f"{self.projection}.member.{member}"

    async def _live_members(self) -> list[str]:
        prefix = f"{self.projection}.member."
        found = {key.removeprefix(prefix) for key in await self.kv.keys(f"{prefix}*")}
        return sorted(found | {self.member})

    # -- one lease's life: acquired, renewed, handed over or lost ---------------

    async def _acquire(self, partition: int) -> None:
        if self._stops.busy(partition):
            return  # still stopping from an earlier loss; next round
        sent = asyncio.get_running_loop().time()
        try:
            revision = await self.kv.create(self._key(partition), self._record())
        except ConcurrencyConflictError:
            adopted = await self._adopt(partition)
            if adopted is None:
                return  # another member holds it; it hands it over when it sees us
            revision = adopted
        lease = self._held[partition] = _Lease(revision)
        self._schedule(partition, lease, sent)
        self._log.info("leases.acquired", member=self.member, partition=partition)
        self.holder.start(partition)
        self.changed.set()

    async def _adopt(self, partition: int) -> int | None:
        """Take back a lease that names this member (a write whose answer was lost)."""
        entry = await self.kv.get(self._key(partition))
        if entry is None:
            return None
        try:
            record = LeaseRecord.model_validate_json(entry.value)
        except ValidationError:
            return None
        if record.owner != self.member:
            return None
        try:
            return await self.kv.put(self._key(partition), self._record(), revision=entry.revision)
        except ConcurrencyConflictError:
            return None

    async def _renew(self, partition: int, lease: _Lease) -> bool:
        """Rewrite the lease on its revision; on a conflict it is lost (False)."""
        sent = asyncio.get_running_loop().time()
        try:
            revision = await self.kv.put(
                self._key(partition), self._record(), revision=lease.revision
            )
        except ConcurrencyConflictError:
            self._lose(partition, lease, "taken: the lease was rewritten by someone else")
            return False
        if self._held.get(partition) is not lease:
            # lost at its deadline while this write was on its way: the key is ours
            # again, but the holder already stopped; give it back
            with contextlib.suppress(ConcurrencyConflictError):
                await self.kv.delete(self._key(partition), revision=revision)
            return False
        lease.revision = revision
        self._schedule(partition, lease, sent)
        return True

    def _schedule(self, partition: int, lease: _Lease, sent: float) -> None:
        if lease.deadline is not None:
            lease.deadline.cancel()
        when = sent + self._ttl * (1 - MARGIN_FRACTION)
        loop = asyncio.get_running_loop()
        lease.deadline = loop.call_at(when, self._lose, partition, lease, "deadline passed")

    def _lose(self, partition: int, lease: _Lease, why: str) -> None:
        """Stop using ``partition`` now: no renewal succeeded in time, or it was taken."""
        if self._held.get(partition) is not lease:
            return
        del self._held[partition]
        if lease.deadline is not None:
            lease.deadline.cancel()
        self._log.warning("leases.lost", member=self.member, partition=partition, reason=why)
        if not lease.handing_over:  # a hand-over is already stopping it
            within = self._ttl * MARGIN_FRACTION / 2  # the server keeps the key longer
            self._stops.tasks[partition] = asyncio.create_task(
                self.holder.stop(partition, within=within), name=f"lease-stop-{partition}"
            )
            self.changed.set()

    def _hand_over(self, partition: int, lease: _Lease) -> None:
        lease.handing_over = True
        self.changed.set()
        task = asyncio.create_task(self._release(partition, lease), name=f"hand-over-{partition}")
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _release(self, partition: int, lease: _Lease) -> None:
        """Stop the holder (renewing meanwhile), then delete the key for the next owner."""
        stopping = asyncio.create_task(
            self.holder.stop(partition, within=None), name=f"lease-stop-{partition}"
        )
        self._stops.tasks[partition] = stopping
        interval = self._ttl / ROUNDS_PER_TTL
        while not stopping.done():
            await asyncio.wait({stopping}, timeout=interval)
            if not stopping.done() and self._held.get(partition) is lease:
                with contextlib.suppress(TransientStoreError):
                    await self._renew(partition, lease)
        await stopping
        if self._held.get(partition) is not lease:
            return  # lost meanwhile: the key is no longer ours to delete
        del self._held[partition]
        if lease.deadline is not None:
            lease.deadline.cancel()
        with contextlib.suppress(ConcurrencyConflictError, TransientStoreError):
            await self.kv.delete(self._key(partition), revision=lease.revision)
        self._log.info("leases.handed_over", member=self.member, partition=partition)

    async def _leave(self) -> None:
        """Leave at once: membership first (others stop counting us), then every lease."""
        with contextlib.suppress(TransientStoreError):
            await self.kv.delete(self._member_key(self.member))
        for partition, lease in list(self._held.items()):
            if not lease.handing_over:
                self._hand_over(partition, lease)
        if self._handovers:
            await asyncio.gather(*self._handovers, return_exceptions=True)
        await self._stops.wait()
        self.settled.clear()
        self._log.info("leases.left", member=self.member)


async def read_leases(store: EventStore, projection: str) -> dict[int, LeaseRecord]:
    """Who holds each partition of ``projection`` now (partitions nobody holds are absent).

    A key whose value is not a :class:`LeaseRecord` is left out: anyone who may
    write the bucket can put anything there, and it is nobody's lease.
    """
    kv = store.kv(store.config.lease_bucket)
    prefix = f"{projection}.partition."
    held: dict[int, LeaseRecord] = {}
    for key in await kv.keys(f"{prefix}*"):
        entry = await kv.get(key)
        number = key.removeprefix(prefix)
        if entry is None or not number.isdecimal():
            continue
        with contextlib.suppress(ValidationError):
            held[int(number)] = LeaseRecord.model_validate_json(entry.value)
    return held


async def read_members(store: EventStore, projection: str) -> dict[str, LeaseRecord]:
    """The live members of ``projection``'s leases now, by member id (none: no worker runs).

    A member holding no partition (a spare) is one too; a key whose value is
    not a :class:`LeaseRecord` is left out, as in :func:`read_leases`.
    """
    kv = store.kv(store.config.lease_bucket)
    prefix = f"{projection}.member."
    members: dict[str, LeaseRecord] = {}
    for key in await kv.keys(f"{prefix}*"):
        entry = await kv.get(key)
        if entry is None:
            continue
        with contextlib.suppress(ValidationError):
            members[key.removeprefix(prefix)] = LeaseRecord.model_validate_json(entry.value)
    return members
