"""The projection runner: fetch, hand to the handler chain, commit what it returns, then ack.

Messages are dispatched to one mailbox per subject (per entity) and each
mailbox is drained by one task at a time, strictly in stream order; mailboxes
of different entities run concurrently. A message whose handler asks for a
retry is nak'ed with a delay and its entity's later messages are held (their
ack timer kept alive) until it comes back, so per-entity order survives
retries.

The tasks are lanes: long-lived tasks that take the next ready mailbox, so a
message costs no task of its own. In the common case (one output, no trace to
continue) a lane does not wait for the output's PubAck either: it starts the
append and moves on, and the PubAck's callback acknowledges the message and
hands its mailbox back to a lane. Anything else the callback sees (a conflict,
a refusal, a timeout, a lost connection) goes back to the awaiting path, which
settles it exactly as if the lane had waited.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import functools
import operator
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from opentelemetry import context as otel_context

from eventstore import ConsumerSettings, validate_token
from eventstore.errors import (
    ConcurrencyConflictError,
    ConsumerDriftError,
    EventStoreError,
    NotProvisionedError,
    PermissionDeniedError,
    TransientStoreError,
)
from projections._checkpoint import CheckpointRecord, read_checkpoint
from projections._deadletter import dead_letter
from projections._message import CHAIN, Message, Result
from projections._partitions import replicated
from projections._seen import SeenSequences
from projections.errors import IdleUnconfirmedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from prometheus_client import Counter

    from eventstore import (
        AppendResult,
        Delivery,
        DurableConsumer,
        EventStore,
        ExpectedVersion,
        PendingAppend,
    )
    from projections._message import Handler, Output, Prepare
    from projections._metrics import ProjectionMetrics
    from projections.errors import CheckpointRefusedError

__all__ = ["ProjectionRunner", "RunnerSettings", "RunnerState"]

_log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


RunnerState = Literal["starting", "running", "paused", "draining", "stopped"]
# With until_idle, once the consumer has nothing left: how long a fetch waits
# before asking whether everything is acknowledged
_IDLE_PROBE = 0.05
_INVALID = "_invalid"
_START_RETRY_FIRST = 0.1  # seconds between tries to start while NATS is unavailable
_START_RETRY_MAX = 5.0
_ADDRESSED = 4  # prefix, category, tenant, entity
_PARTITIONED = 5  # prefix, category, partition, tenant, entity
_HEADERS_ONLY = "Nats-Msg-Size"
"""Set by the server on a delivery whose payload was left out (a ``headers_only`` consumer)."""


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Tuning of a runner. ``max_deliver`` is enforced by the runner itself (see docs)."""

    batch: int = 256
    max_in_flight: int = 4096
    fetch_timeout: float = 1.0
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 10_000
    checkpoint_interval: float = 1.0
    max_conflicts: int = 5
    drain_timeout: float = 20.0


_MAX_PARKED_LANES = 256
"""Idle lanes kept parked; more end, to be started again when needed."""


@dataclass(slots=True)
class _Mailbox:
    queue: list[Delivery] = field(default_factory=list)
    blocked_by: int | None = None
    blocked_since: float = 0.0
    active: bool = False


@functools.lru_cache(maxsize=65_536)  # checked once per subject, not once per message
def split_subject(subject: str) -> tuple[str, str]:
    """``(tenant, entity)`` of ``<prefix>.<category>.[<partition>.]<tenant>.<entity>``.

    Subjects that do not have that shape (written around the store) give
    ``_invalid`` for both, so their dead letters still have a valid subject.
    """
    parts = subject.split(".")
    if len(parts) == _PARTITIONED and parts[2].isdecimal():
        del parts[2]
    if len(parts) != _ADDRESSED:
        return _INVALID, _INVALID
    try:
        return validate_token(parts[2]), validate_token(parts[3])
    except ValueError:
        return _INVALID, _INVALID


_LEADER_RETRY_FIRST = 0.1
_LEADER_RETRY_MAX = 2.0
"""Seconds an until-idle runner waits before asking a leader that did not answer again."""
_stream_seq = operator.attrgetter("stream_seq")


def _remove(queue: list[Delivery], seq: int) -> None:
    """Drop the delivery of stream sequence ``seq`` from a mailbox queue (kept in order)."""
    at = bisect.bisect_left(queue, seq, key=_stream_seq)
    if at < len(queue) and queue[at].stream_seq == seq:
        del queue[at]


class ProjectionRunner:
    """Runs one projection over one durable consumer until stopped (or idle)."""

    def __init__(  # noqa: PLR0913 - the runner's collaborators, all keyword-only
        self,
        store: EventStore,
        *,
        name: str,
        consumer: str | None = None,
        handler: Handler,
        on_commit: Callable[[Message, list[AppendResult]], None],
        on_conflict: Callable[[Message], None],
        filter_subject: str | None = None,
        stream: str | None = None,
        settings: RunnerSettings | None = None,
        metrics: ProjectionMetrics | None = None,
        clock: Callable[[], datetime] = _utc_now,
        before_batch: Callable[[], Awaitable[None]] | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.consumer_name = consumer or name
        """The durable consumer and checkpoint key: one projection may run several."""
        self.settings = settings or RunnerSettings()
        self.state: RunnerState = "starting"
        self.checkpoint = 0
        self._generation = ""  # of the consumer's stream, as read with the checkpoint
        self._handler = handler
        # after each fetch that delivered something, before any of it is handled:
        # ``before_batch`` awaited, then ``prepare`` called with the batch, work done for
        # every delivery in one pass (e.g. decoding the evidence), which keeps that code
        # hot where handling one message at a time runs every step in turn
        self._before_batch, self._prepare = before_batch, prepare
        self._prepared: dict[int, object] = {}  # by stream sequence, until handled or let go
        self._on_commit = on_commit
        self._on_conflict = on_conflict
        self._filter = filter_subject
        self._consumer_settings: ConsumerSettings | None = None
        self._failure: ConsumerDriftError | IdleUnconfirmedError | None = None
        self._metrics = metrics
        self._clock = clock
        self._outcomes: dict[str, Counter] = {}
        self.outcomes: collections.Counter[str] = collections.Counter()
        """How many messages this runner finished, by outcome."""
        if metrics is not None:  # labelled children looked up once, not per message
            self._processing = metrics.processing.labels(name)
            self._end_to_end = metrics.end_to_end.labels(name)
            metrics.paused.labels(name, self.consumer_name).set(0)  # not "no data"
        self._consumer: DurableConsumer = store.consumer(self.consumer_name, stream=stream)
        self._boxes: dict[str, _Mailbox] = {}
        self._blocked: set[str] = set()
        """Subjects whose mailbox waits for a released message to come back."""
        self._in_flight: dict[int, Delivery] = {}
        self._received: dict[int, float] = {}
        self._room = asyncio.Event()
        self._resumed = asyncio.Event()
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        """Set once the consumer is in place and fetching has begun."""
        self._tasks: asyncio.TaskGroup | None = None
        self._lanes: set[asyncio.Task[None]] = set()  # and the tasks that finish a commit
        self._ready: collections.deque[str] = collections.deque()  # mailboxes to drain
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        self._committing = 0  # commits whose PubAck's callback has not run yet
        self._commits_done = asyncio.Event()
        self._commits_done.set()
        self._drained = False
        self._seen = SeenSequences()
        self._unconfirmed_since: float | None = None  # the leader unreached since (loop time)
        self._ask_leader_at = 0.0  # no idle check before then (loop time): backing off
        self._leader_delay = 0.0  # the last such wait, doubled each time
        self._backlog: int | None = None  # messages the consumer had left after the last delivery

    # -- lifecycle ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None, *, until_idle: bool = False) -> None:
        """Consume until ``stop`` is set (or, with ``until_idle``, until nothing is pending).

        Raises:
            ConsumerDriftError: the consumer was changed by someone else (found
                at start, or from a delivery without its payload); stopped first.
            IdleUnconfirmedError: with ``until_idle``, the consumer said nothing
                was pending but the stream's leader could not confirm it; stopped
                first, never taken for idle.
        """
        self._stop = stop or asyncio.Event()
        if not await self._set_up():
            self.state = "stopped"  # asked to stop before NATS answered
            return
        self.state = "running"
        self.started.set()
        _log.info(
            "projection.started",
            projection=self.name,
            consumer=self.consumer_name,
            checkpoint=self.checkpoint,
        )
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            keepalive = tasks.create_task(self._keepalive(), name=f"{self.consumer_name}-keepalive")
            try:
                await self._fetch_loop(until_idle=until_idle)
            finally:
                self.state = "draining"
                await self._drain()
                keepalive.cancel()
        await self._write_checkpoint()
        await self._consumer.close()
        self.state = "stopped"
        _log.info(
            "projection.stopped",
            projection=self.name,
            consumer=self.consumer_name,
            checkpoint=self.checkpoint,
            outcomes=dict(self.outcomes),
        )
        if self._failure is not None:
            raise self._failure

    async def _set_up(self) -> bool:
        """Read the checkpoint and set up the consumer, retrying while NATS is unavailable.

        Returns ``False`` when asked to stop first.
        """
        delay = _START_RETRY_FIRST
        while True:
            try:
                await self._ensure_consumer()
            except TransientStoreError as exc:
                _log.warning(
                    "projection.start_failed",
                    projection=self.name,
                    consumer=self.consumer_name,
                    error=str(exc),
                    retry_in=delay,
                )
            else:
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
                    return False
            delay = min(delay * 2, _START_RETRY_MAX)

    async def _ensure_consumer(self) -> None:
        stored = await read_checkpoint(self.store, self.consumer_name, self._consumer.stream)
        self._generation = stored.generation
        if stored.refused is not None:
            self._refused(stored.refused)
        self.checkpoint = stored.sequence
        # The server delivers without limit; the runner enforces max_deliver by
        # dead-lettering, so no message is ever silently abandoned by the server.
        self._consumer_settings = ConsumerSettings(
            ack_wait=self.settings.ack_wait,
            max_deliver=-1,
            max_ack_pending=self.settings.max_ack_pending,
            filter_subject=self._filter,
            start_seq=self.checkpoint + 1 if self.checkpoint else None,
        )
        info = await self._consumer.ensure(self._consumer_settings)
        # Acknowledged means handled: a restarted worker need not look for gaps
        # below the ack floor. With nothing outstanding it knows more: the next
        # delivery is the filter's next message, so it tracks from there.
        floor = int(info.get("ack_floor", {}).get("stream_seq", 0))
        delivered = info.get("delivered", {})
        if int(info.get("num_ack_pending", 0)) == 0 and not info.get("num_redelivered"):
            self._seen.start_at(
                max(floor, int(delivered.get("stream_seq", 0)), self.checkpoint),
                int(delivered.get("consumer_seq", 0)),
            )
        else:
            self._seen.handled_through(floor)

    async def verify_consumer(self) -> None:
        """Check that the durable consumer still delivers as this runner set it up.

        Raises:
            ConsumerDriftError: someone changed it (its filter, headers only, ...).
            NotProvisionedError: it was deleted (a running runner recreates it).
        """
        if self._consumer_settings is not None:
            await self._consumer.verify(self._consumer_settings)

    async def _drain(self) -> None:
        """Let lanes finish their message and commits get their PubAck; release the rest."""
        self._stop.set()
        self._resumed.set()  # wake paused tasks so they can release their message
        self._wake_lanes()  # parked lanes see the stop and end
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout
        while self._lanes or self._committing:
            left = deadline - loop.time()
            if left <= 0:
                break
            waiting: set[asyncio.Future[Any]] = set(self._lanes)
            commits = loop.create_task(self._commits_done.wait())
            waiting.add(commits)
            await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            commits.cancel()
        for task in list(self._lanes):
            task.cancel()
        self._drained = True  # a PubAck arriving later finds its message released below
        for delivery in list(self._in_flight.values()):
            with contextlib.suppress(EventStoreError):
                await self._consumer.nak(delivery, delay=1.0)
        self._in_flight.clear()
        self._prepared.clear()
        self._boxes.clear()
        self._blocked.clear()

    # -- fetching and dispatch ----------------------------------------------------

    async def _fetch_loop(self, *, until_idle: bool) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            if self.state == "paused":
                await self._wait_for(self._resumed, 0.5)
                continue
            if not self._room_for_a_fetch():
                self._room.clear()  # set again by _finish once enough messages are done
                await self._wait_for(self._room, 0.5)
                continue
            wait = self.settings.fetch_timeout
            if until_idle and self._backlog == 0:
                wait = min(wait, _IDLE_PROBE)  # the last delivery said nothing was left
            try:
                deliveries = await self._fetch(wait)
            except TransientStoreError as exc:  # NATS away, or a leader being elected
                self._fetch_failed(exc, backoff)
                await self._wait_for(self._stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if any(_HEADERS_ONLY in d.headers for d in deliveries):
                await self._refuse_headers_only(deliveries)
                continue
            if deliveries:
                await self._fetched(deliveries)
            for delivery in deliveries:
                self._dispatch(delivery)
            if not deliveries and until_idle and not self._in_flight and await self._idle():
                return

    async def _fetched(self, deliveries: list[Delivery]) -> None:
        """What a fetched batch waits for before it is handed out: ``before_batch``, ``prepare``."""
        if self._before_batch is not None:
            await self._before_batch()
        if self._prepare is not None:
            self._prepare_batch(self._prepare, deliveries)

    def _prepare_batch(self, prepare: Prepare, deliveries: list[Delivery]) -> None:
        """Keep what ``prepare`` made of each delivery for its handling; a failure loses nothing.

        The handler works without it, so a ``prepare`` that raises, or that
        does not give one result per delivery (which could pair a result with
        the wrong message), only costs the batch its head start: logged, and
        the handlers do the work.
        """
        try:
            prepared = prepare(deliveries)
        except Exception:  # noqa: BLE001 - a bug in it must not stop the fetching
            _log.exception("projection.prepare_failed", projection=self.name)
            return
        if len(prepared) != len(deliveries):
            _log.error(
                "projection.prepare_failed",
                projection=self.name,
                error=f"{len(prepared)} results for {len(deliveries)} deliveries",
            )
            return
        for delivery, made in zip(deliveries, prepared, strict=True):
            if made is not None:
                self._prepared[delivery.stream_seq] = made

    def _room_for_a_fetch(self) -> bool:
        """Room for half a batch at least: when full, a message done does not pull one more.

        Refilling one message at a time would send the server a pull request
        per message finished, as a deep backlog (or one hot entity) keeps the
        runner full.
        """
        return self._free() >= max(1, min(self.settings.batch, self.settings.max_in_flight) // 2)

    def _free(self) -> int:
        """Messages the budget has room for: held ones wait, they are not work in hand."""
        room = self.settings.max_in_flight - len(self._in_flight)
        return room + self._held() if self._blocked else room

    def _held(self) -> int:
        """Messages waiting in mailboxes whose earlier message was released for a retry.

        They are not counted against the budget: the released message comes
        back only through a fetch, and a budget full of messages waiting for it
        would never fetch again (each entity's held messages went on only when
        let go as stale, one at a time). The consumer's ``max_ack_pending``
        bounds them.
        """
        return sum(len(self._boxes[subject].queue) for subject in self._blocked)

    async def _fetch(self, wait: float) -> list[Delivery]:
        """The next deliveries; none after recreating a consumer found missing."""
        try:
            return await self._consumer.fetch(min(self.settings.batch, self._free()), wait)
        except NotProvisionedError:
            _log.warning("projection.consumer_missing", projection=self.name)
            await self._ensure_consumer()
            return []

    def _fetch_failed(self, exc: TransientStoreError, retry_in: float) -> None:
        _log.warning(
            "projection.fetch_failed", projection=self.name, error=str(exc), retry_in=retry_in
        )
        if self._metrics is not None:
            self._metrics.fetch_failures.labels(self.name).inc()

    async def _refuse_headers_only(self, deliveries: list[Delivery]) -> None:
        """Deliveries without their payload: the consumer was changed. Never handle them.

        Handled, each would become a dead letter of nothing; released instead,
        they wait for a consumer that delivers them whole.

        The runner stops, and :meth:`run` raises the
        :class:`~eventstore.errors.ConsumerDriftError`, while the consumer is
        still changed.
        """
        for delivery in deliveries:
            with contextlib.suppress(EventStoreError):
                await self._consumer.nak(delivery, delay=1.0)
        try:
            await self.verify_consumer()
        except ConsumerDriftError as exc:
            self._failure = exc
            self._stop.set()

    async def _wait_for(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()

    async def _idle(self) -> bool:
        """Nothing pending, as the consumer says and as the stream's leader confirms.

        A consumer counts what its own replica of the stream holds: right after
        a cluster's nodes come back, that replica may still be catching up and
        report nothing pending while the leader holds more of the partition
        (an until-idle run then stopped with evidence unhandled). So the leader
        is asked for the first message on the consumer's subjects past its ack
        floor; a leader that does not answer is asked again (see
        :meth:`_unconfirmed`), and the consumer's word alone never ends the run.
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._ask_leader_at:
            return False
        try:
            info = await self._consumer.info()
        except EventStoreError:
            return False
        if int(info["num_pending"]) != 0 or int(info["num_ack_pending"]) != 0:
            self._unconfirmed_since = None  # work to do: the leader's silence starts over
            return False
        floor = int(info.get("ack_floor", {}).get("stream_seq", 0))
        subjects = self._filter or f"{self.store.config.prefix}.>"
        try:
            later = await self.store.client.leader_next_sequence(
                self._consumer.stream, floor + 1, subjects
            )
        except EventStoreError as exc:
            return self._unconfirmed(info, exc)
        self._unconfirmed_since = None
        return later is None

    def _unconfirmed(self, info: dict[str, Any], exc: EventStoreError) -> bool:
        """Whether the consumer's "nothing pending" stands although the leader was not reached.

        It does when the stream has no other replica: the consumer's is then
        the leader's own. Otherwise the leader is asked again at the next idle
        check (backing off), for as long as the store's election window; after
        that, or at once when the user may not ask the leader, the run fails
        (:class:`IdleUnconfirmedError`, set as the runner's failure) rather
        than stop with evidence possibly unhandled.
        """
        if not replicated(info):
            return True  # one copy of the stream: nothing for a leader to know better
        now = asyncio.get_running_loop().time()
        if self._unconfirmed_since is None:
            self._unconfirmed_since = now
            self._leader_delay = 0.0
        waited = now - self._unconfirmed_since
        window = self.store.config.election_window.total_seconds()
        if isinstance(exc, PermissionDeniedError) or waited >= window:
            self._failure = IdleUnconfirmedError(
                self.consumer_name, self._consumer.stream, waited, str(exc)
            )
            self._stop.set()  # run() raises it once drained
            _log.error(
                "projection.idle_unconfirmed",
                projection=self.name,
                consumer=self.consumer_name,
                waited=round(waited, 1),
                error=str(exc),
            )
            return False
        doubled = max(_LEADER_RETRY_FIRST, 2 * self._leader_delay)
        self._leader_delay = min(doubled, _LEADER_RETRY_MAX)
        self._ask_leader_at = now + self._leader_delay
        _log.info(
            "projection.idle_unconfirmed_retry",
            projection=self.name,
            consumer=self.consumer_name,
            retry_in=self._leader_delay,
            error=str(exc),
        )
        return False

    def _dispatch(self, delivery: Delivery) -> None:
        seq = delivery.stream_seq
        self._backlog = delivery.num_pending
        self._seen.add(seq, delivery.consumer_seq, redelivered=delivery.num_delivered > 1)
        if delivery.num_delivered > 1 and self._metrics is not None:
            self._metrics.redeliveries.labels(self.name).inc()
        self._in_flight[seq] = delivery
        self._received.setdefault(seq, time.monotonic())
        box = self._boxes.setdefault(delivery.subject, _Mailbox())
        queue = box.queue
        if not queue or queue[-1].stream_seq < seq:
            queue.append(delivery)  # in stream order, as a partition delivers: a hot entity's
            # mailbox may hold thousands, so never look through it
        else:
            at = bisect.bisect_left(queue, seq, key=_stream_seq)
            if at < len(queue) and queue[at].stream_seq == seq:
                queue[at] = delivery  # a redelivery of a message we hold: keep the newest
            else:
                queue.insert(at, delivery)
        if box.blocked_by == seq:
            box.blocked_by = None  # the message that blocked its entity is back
            self._blocked.discard(delivery.subject)
        if not box.active and box.blocked_by is None:
            self._start(delivery.subject, box)

    def _start(self, subject: str, box: _Mailbox) -> None:
        """Have a lane drain an entity's mailbox."""
        box.active = True
        self._schedule(subject)

    def _schedule(self, subject: str) -> None:
        """Queue an active mailbox for a lane: a parked one, or a new one if none is."""
        self._ready.append(subject)
        if not self._wake_lanes(1):
            self._spawn(self._lane())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a lane does: in the task group, awaited when draining."""
        assert self._tasks is not None  # noqa: S101 - set by run()
        task = self._tasks.create_task(work)
        self._lanes.add(task)
        task.add_done_callback(self._lanes.discard)

    def _wake_lanes(self, count: int | None = None) -> int:
        """Wake ``count`` parked lanes (all if ``None``); how many were woken."""
        woken = 0
        while self._parked and (count is None or woken < count):
            parked = self._parked.pop()  # the most recently parked
            if not parked.done():
                parked.set_result(None)
                woken += 1
        return woken

    async def _lane(self) -> None:
        """Drain ready mailboxes one after the other; park while none is ready."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            if self._ready:
                await self._drain_mailbox(self._ready.popleft())
                continue
            if len(self._parked) >= _MAX_PARKED_LANES:
                return  # enough lanes wait already: a burst's extra lanes end
            parked = loop.create_future()
            self._parked.append(parked)
            await parked

    async def _drain_mailbox(self, subject: str) -> None:
        box = self._boxes[subject]
        while box.queue and box.blocked_by is None and not self._stop.is_set():
            delivery = box.queue[0]
            try:
                done = await self._handle(delivery)
            except Exception:  # noqa: BLE001 - a handler bug must not take the worker down
                _log.exception("projection.handler_crashed", projection=self.name)
                await self._release(delivery, 5.0, "retried")
                done = False
            if done is None:
                return  # committing: the PubAck's callback goes on with the mailbox
            self._handled(box, delivery, done=done)
        self._rest(subject, box)

    def _handled(self, box: _Mailbox, delivery: Delivery, *, done: bool) -> None:
        """Take a finished message out of its mailbox; one released for redelivery blocks it."""
        _remove(box.queue, delivery.stream_seq)  # not pop(0): a redelivery may sit ahead now
        if not done:
            box.blocked_by = delivery.stream_seq
            box.blocked_since = time.monotonic()
            self._blocked.add(delivery.subject)
            if box.queue and self._room_for_a_fetch():
                self._room.set()  # what it holds waits now: room to fetch its return

    def _rest(self, subject: str, box: _Mailbox) -> None:
        """A mailbox no lane drains any more: forget it if nothing is left in it."""
        box.active = False
        if not box.queue and box.blocked_by is None:
            self._boxes.pop(subject, None)

    def _finished_off_lane(self, delivery: Delivery, *, done: bool) -> None:
        """A message finished outside its lane: take it out, then drain the rest or rest."""
        subject = delivery.subject
        box = self._boxes[subject]
        self._handled(box, delivery, done=done)
        if box.queue and box.blocked_by is None and not self._stop.is_set():
            self._schedule(subject)
        else:
            self._rest(subject, box)

    # -- handling one message -----------------------------------------------------

    def _message(self, delivery: Delivery) -> Message:
        tenant, entity = split_subject(delivery.subject)
        message = Message(self.name, delivery, tenant, entity, self.settings.max_deliver)
        message.prepared = self._prepared.pop(delivery.stream_seq, None)  # handled once only
        if not self._filter or self._filter.endswith(".>"):
            message.delivered_here = self._seen.covers
        return message

    async def _handle(
        self, delivery: Delivery, handled: tuple[Message, Result] | None = None
    ) -> bool | None:
        """Handle until committed and acked (True) or released for redelivery (False).

        ``None``: committing without waiting, the PubAck's callback finishes
        it. ``handled`` is a message already handled, whose commit is settled
        here.
        """
        message, result = handled or (self._message(delivery), None)
        conflicts = 0
        while True:
            if result is None:
                result = await self._outcome(delivery, message)
                if result is None:
                    return False
                if not conflicts and self._commit_soon(delivery, message, result):
                    return None
            try:
                self._on_commit(message, await self._commit(result.outputs, message))
            except ConcurrencyConflictError as exc:
                conflicts += 1
                _log.info(
                    "projection.conflict",
                    projection=self.name,
                    subject=exc.subject,
                    round=conflicts,
                )
                self._on_conflict(message)
                if conflicts <= self.settings.max_conflicts:
                    message, result = self._message(delivery), None
                    continue
                await self._release(delivery, 1.0, "retried")
                return False
            except TransientStoreError as exc:
                _log.warning("projection.commit_failed", projection=self.name, error=str(exc))
                await self._release(delivery, 1.0, "retried")
                return False
            except EventStoreError as exc:
                # the store refused what the handler produced (e.g. too large): that
                # will not change, so the input becomes a dead letter
                _log.warning("projection.commit_refused", projection=self.name, error=str(exc))
                result = await self._dead_letter(message, exc)
            await self._acknowledge(delivery, result)
            return True

    async def _outcome(self, delivery: Delivery, message: Message) -> Result | None:
        """The handler's result to commit; ``None`` once the message is released instead.

        Released: the handler asked for a retry, or paused until the runner stopped.
        """
        while True:
            result = await self._handler(message)
            if result.kind == "pause":
                await self._pause(result)
                if self._stop.is_set():
                    await self._release(delivery, 1.0, "paused")
                    return None
                continue
            self._resume()
            if result.kind == "retry":
                await self._release(delivery, result.delay, result.outcome)
                return None
            return result

    async def _dead_letter(self, message: Message, exc: EventStoreError) -> Result:
        output = dead_letter(
            message,
            exc,
            permanent=True,
            now=self._clock(),
            config=self.store.config,
            max_bytes=self.store.payload_limit("dlq"),
        )
        await self._commit((output,), message)
        return Result.commit((output,), "dead_lettered")

    async def _commit(
        self, outputs: tuple[Output, ...], message: Message | None = None
    ) -> list[AppendResult]:
        # under the message's trace: what it produces continues the producer's trace
        trace_context = message.context.get("otel_context") if message is not None else None
        token = otel_context.attach(trace_context) if trace_context is not None else None
        try:
            return await self._commit_in_order(outputs)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _commit_in_order(self, outputs: tuple[Output, ...]) -> list[AppendResult]:
        results: list[AppendResult] = []
        versions: dict[str, int] = {}
        for output in outputs:
            subject = output.subject or self.store.subject_of(output.event)
            expected: ExpectedVersion = (
                versions[subject]  # fenced on the output committed just before it
                if output.expected_version == CHAIN
                else output.expected_version
            )
            result = await self.store.append(
                output.event,
                expected_version=expected,
                subject=subject,
                headers=output.headers or None,
                data=output.data,
            )
            versions[subject] = result.version
            results.append(result)
        return results

    def _commit_soon(self, delivery: Delivery, message: Message, result: Result) -> bool:
        """Start committing the one output of ``result`` without waiting; whether it started.

        The PubAck's callback, :meth:`_committed`, acknowledges the message.
        False when there is not exactly one output (or it is chained), when
        the commit must continue a trace, or when the store cannot start the
        append without waiting: the caller then commits and waits.
        """
        if len(result.outputs) != 1 or message.context.get("otel_context") is not None:
            return False
        (output,) = result.outputs
        if output.expected_version == CHAIN:
            return False
        try:
            subject = output.subject or self.store.subject_of(output.event)
        except EventStoreError:
            return False  # the awaiting path raises it, and dead-letters the message
        pending = self.store.append_soon(
            output.event,
            expected_version=output.expected_version,
            subject=subject,
            headers=output.headers or None,
            data=output.data,
        )
        if pending is None:
            return False
        self._committing += 1
        self._commits_done.clear()
        pending.future.add_done_callback(
            functools.partial(self._committed, delivery, (message, result), pending)
        )
        return True

    def _committed(
        self,
        delivery: Delivery,
        handled: tuple[Message, Result],
        pending: PendingAppend,
        _: asyncio.Future[Any],
    ) -> None:
        """The PubAck of a commit started by :meth:`_commit_soon`: finish its message."""
        self._committing -= 1
        if not self._committing:
            self._commits_done.set()
        stored = pending.result()
        if self._drained:
            return  # stopped meanwhile: the message was released for redelivery
        if stored is None:  # not stored, or not known to be: the awaiting path settles it
            self._spawn(self._settle(delivery, handled))
            return
        message, result = handled
        try:
            self._on_commit(message, [stored])
        except Exception:  # noqa: BLE001 - as a handler bug: released, the worker goes on
            _log.exception("projection.handler_crashed", projection=self.name)
            self._spawn(self._crashed(delivery))
            return
        if not self._consumer.ack_nowait(delivery):
            self._spawn(self._acknowledge_late(delivery, result))
            return
        self._acknowledged(delivery, result)
        self._finished_off_lane(delivery, done=True)

    async def _settle(self, delivery: Delivery, handled: tuple[Message, Result]) -> None:
        """Finish a message whose commit its PubAck did not settle, as if the lane had waited."""
        try:
            done = await self._handle(delivery, handled)
        except Exception:  # noqa: BLE001 - a handler bug must not take the worker down
            _log.exception("projection.handler_crashed", projection=self.name)
            await self._release(delivery, 5.0, "retried")
            done = False
        self._finished_off_lane(delivery, done=bool(done))

    async def _crashed(self, delivery: Delivery) -> None:
        await self._release(delivery, 5.0, "retried")
        self._finished_off_lane(delivery, done=False)

    async def _acknowledge_late(self, delivery: Delivery, result: Result) -> None:
        await self._acknowledge(delivery, result)
        self._finished_off_lane(delivery, done=True)

    async def _acknowledge(self, delivery: Delivery, result: Result) -> None:
        try:
            await self._consumer.ack(delivery)
        except EventStoreError as exc:  # redelivered later; the handler sees it is done
            _log.warning("projection.ack_failed", projection=self.name, error=str(exc))
        self._acknowledged(delivery, result)

    def _acknowledged(self, delivery: Delivery, result: Result) -> None:
        self._finish(delivery, result.outcome)
        if self._metrics is not None:
            self._end_to_end.observe(max(0.0, time.time() - delivery.stored_at.timestamp()))

    async def _release(self, delivery: Delivery, delay: float, outcome: str) -> None:
        self._seen.release(delivery.stream_seq)
        try:
            await self._consumer.nak(delivery, delay)
        except EventStoreError as exc:  # redelivered after ack_wait anyway
            _log.warning("projection.nak_failed", projection=self.name, error=str(exc))
        self._finish(delivery, outcome)

    def _finish(self, delivery: Delivery, outcome: str) -> None:
        self.outcomes[outcome] += 1
        seq = delivery.stream_seq
        self._in_flight.pop(seq, None)
        self._prepared.pop(seq, None)
        received = self._received.pop(seq, None)
        if self._room_for_a_fetch():
            self._room.set()
        if self._metrics is not None:
            if (counter := self._outcomes.get(outcome)) is None:
                counter = self._outcomes[outcome] = self._metrics.messages.labels(
                    self.name, outcome
                )
            counter.inc()
            if received is not None:
                self._processing.observe(time.monotonic() - received)

    async def _pause(self, result: Result) -> None:
        if self.state != "paused":
            _log.warning("projection.pausing", projection=self.name, reason=result.reason)
            if self._metrics is not None:
                self._metrics.messages.labels(self.name, "paused").inc()
                self._metrics.paused.labels(self.name, self.consumer_name).set(1)
        self.state = "paused"
        self._resumed.clear()
        await self._wait_for(self._resumed, result.delay)

    def _resume(self) -> None:
        if self.state == "paused":
            _log.info("projection.resumed", projection=self.name)
            self.state = "running"
            self._resumed.set()
            if self._metrics is not None:
                self._metrics.paused.labels(self.name, self.consumer_name).set(0)

    # -- keeping held messages alive, checkpoints -----------------------------------

    async def _keepalive(self) -> None:
        period = max(0.2, min(self.settings.ack_wait / 3, self.settings.checkpoint_interval))
        last_progress = time.monotonic()
        # Ends when the runner stops, not only when cancelled: on Python 3.11 a
        # cancellation that meets a reply arriving in the same loop iteration can
        # be lost inside the client's request, and the task group would wait for
        # this task forever.
        while not self._stop.is_set():
            await self._wait_for(self._stop, period)
            if self._stop.is_set():
                return
            self._unblock_stale()
            if time.monotonic() - last_progress >= self.settings.ack_wait / 3:
                last_progress = time.monotonic()
                for delivery in list(self._in_flight.values()):
                    with contextlib.suppress(EventStoreError):
                        await self._consumer.in_progress(delivery)
            await self._write_checkpoint()

    def _unblock_stale(self) -> None:
        """Let an entity's held messages go on if its blocking message went to another worker.

        Safe: the handler finds an earlier unhandled message of the entity itself.
        """
        limit = time.monotonic() - 2 * self.settings.ack_wait
        for subject, box in list(self._boxes.items()):
            if box.blocked_by is not None and box.blocked_since < limit:
                box.blocked_by = None
                self._blocked.discard(subject)
                if box.queue and not box.active:
                    self._start(subject, box)

    async def _write_checkpoint(self) -> None:
        """Record the consumer's ack floor: every sequence at or below it is committed."""
        try:
            info = await self._consumer.info()
            floor = int(info["ack_floor"]["stream_seq"])
            self._observe(info)
            if floor > self.checkpoint:
                await self._store_checkpoint(floor)
        except EventStoreError as exc:
            _log.debug("projection.checkpoint_skipped", projection=self.name, error=str(exc))

    async def _store_checkpoint(self, floor: int) -> None:
        current = await read_checkpoint(self.store, self.consumer_name, self._consumer.stream)
        if current.generation != self._generation:
            return  # the stream was created again: the consumer is recreated first
        if current.sequence >= floor:
            return  # never backwards: another worker already wrote a later one
        # a refused record (malformed, moved past the stream, another generation) is replaced
        value = CheckpointRecord.of(floor, current.generation).encoded()
        bucket = self.store.kv(self.store.config.checkpoint_bucket)
        await bucket.put(self.consumer_name, value, revision=current.revision)
        self.checkpoint = floor
        if self._metrics is not None:
            self._metrics.checkpoint.labels(self.name, self.consumer_name).set(floor)

    def _refused(self, refused: CheckpointRefusedError) -> None:
        """A stored checkpoint not to start from: said and counted; the runner starts without it.

        Safe: an existing consumer keeps its own ack floor, and a recreated one
        delivers from the start, where the projection skips what is handled.
        """
        _log.warning(
            "projection.checkpoint_refused",
            projection=self.name,
            reason=refused.reason,
            error=str(refused),
        )
        if self._metrics is not None:
            self._metrics.checkpoints_refused.labels(self.name, refused.reason).inc()

    def _observe(self, info: dict[str, object]) -> None:
        if self._metrics is not None:
            self._metrics.pending.labels(self.name, self.consumer_name).set(
                float(str(info["num_pending"]))
            )
            self._metrics.ack_pending.labels(self.name, self.consumer_name).set(
                float(str(info["num_ack_pending"]))
            )
            self._metrics.in_flight.labels(self.name, self.consumer_name).set(len(self._in_flight))
