"""One projection as a worker runs it: its runners, one per partition of its source, and leases.

A worker hosts several projections (risk over evidence, review over
assessments); each is a :class:`ProjectionHost` with its own consumers
(``<name>-<partition>``), checkpoints, leases (``<name>.<partition>``) and
dead letters. Adding a projection is a wiring change: a :class:`Hosted`
projection, the category it reads, and a handler chain.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from eventstore.errors import ConsumerDriftError, TransientStoreError
from projections import (
    IdleUnconfirmedError,
    PartitionLeases,
    ProjectionRunner,
    consumer_name,
    expected_consumer,
    partition_filter,
    partition_views,
    source_partitions,
    undrained_partitions,
)
from riskpipe.ownership import LeasedRunners, member_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventstore import AppendResult, EventStore
    from projections import Handler, Message, Prepare, ProjectionMetrics, Result, RunnerSettings

__all__ = ["Hosted", "HostedSpec", "ProjectionHost"]

_log = structlog.get_logger(__name__)
_BATCH_ROUND_SECONDS = 1.0
"""A shared batch run's lease rounds: processes started together split the work this soon."""
_BATCH_GATHER_SECONDS = 5.0
"""How long the processes of a batch run wait for each other before taking partitions."""
_DRAINED_CHECK_SECONDS = 0.5
"""How often a shared batch run asks whether every partition is drained."""


class Hosted(Protocol):
    """What the runtime needs of a projection: a handler and what to do after a commit."""

    name: str

    async def handle(self, message: Message) -> Result:
        """The decision about one message: outputs to commit, a retry, or a pause."""
        ...

    async def is_handled(self, message: Message) -> bool:
        """Whether another worker already committed this message's effect."""
        ...

    def committed(self, message: Message, results: list[AppendResult]) -> None:
        """The message's outputs are stored."""

    def conflicted(self, message: Message) -> None:
        """A commit met a concurrency conflict: the message is handled again."""


@dataclass(frozen=True, slots=True)
class HostedSpec:
    """A projection as a worker hosts it."""

    projection: Hosted
    source: str
    """The category of events it reads (its stream's spec says whether it is partitioned)."""
    handler: Handler
    """``projection.handle`` wrapped in its middleware chain."""
    verify: Callable[[], Awaitable[None]] | None = None
    """A check of the source's identity, at start and while running (raises to stop)."""
    subjects: str | None = None
    """Part of an unpartitioned source only (a filter subject), e.g. one projection's
    dead letters."""
    before_batch: Callable[[], Awaitable[None]] | None = None
    """Awaited by each runner after a fetch, before the batch is handled (e.g. a config check)."""
    prepare: Prepare | None = None
    """Called by each runner with a fetched batch, after ``before_batch``: work done for the
    whole batch in one pass, which each message's handling then finds (``Message.prepared``)."""


class ProjectionHost:
    """The runners of one projection in this worker: all its partitions, or those it leases."""

    def __init__(
        self,
        store: EventStore,
        spec: HostedSpec,
        *,
        settings: RunnerSettings,
        metrics: ProjectionMetrics,
    ) -> None:
        self.store = store
        self.spec = spec
        self.name = spec.projection.name
        self._settings = settings
        self._metrics = metrics
        self.runners: dict[int, ProjectionRunner] = {}
        """The partitions this host consumes, each by its own runner and durable consumer."""
        self.leases: PartitionLeases | None = None
        """This projection's partition leases (not used by a batch run of one process)."""
        self._holder: LeasedRunners | None = None
        self.drained = False
        """A shared batch run found every partition drained (and stopped for that)."""
        self.started = asyncio.Event()
        """Set once every runner has its consumer in place and fetches."""
        self.drift: ConsumerDriftError | None = None
        self.unconfirmed: IdleUnconfirmedError | None = None
        """A batch run of one process could not confirm a partition idle (then it failed)."""

    @property
    def partitions(self) -> int:
        """How many partitions the source has for this projection (1 unless partitioned)."""
        return source_partitions(self.store, self.spec.source)

    def partition_settings(self) -> RunnerSettings:
        """The runner settings of one partition: a share of the worker's in-flight budget.

        ``RISKPIPE_MAX_IN_FLIGHT`` is the worker's: split over the source's
        partitions (at least 1 each), so a worker holding every partition holds
        at most that many messages, not P times as many. Messages held longer
        than the ack wait are redelivered: a budget per partition would let a
        deep backlog on 16 partitions outgrow it.
        """
        share = self._settings.max_in_flight // self.partitions
        return dataclasses.replace(self._settings, max_in_flight=max(1, share))

    def runner_for(self, partition: int) -> ProjectionRunner:
        """The runner of one partition: consumer ``<projection>-<partition>``, its subjects only."""
        projection = self.spec.projection
        return ProjectionRunner(
            self.store,
            name=self.name,
            consumer=consumer_name(self.name, partition),
            handler=self.spec.handler,
            on_commit=projection.committed,
            on_conflict=projection.conflicted,
            filter_subject=self.spec.subjects
            or partition_filter(self.store, self.spec.source, partition),
            stream=self.store.config.stream_for(self.spec.source),
            settings=self.partition_settings(),
            metrics=self._metrics,
            before_batch=self.spec.before_batch,
            prepare=self.spec.prepare,
        )

    @property
    def outcomes(self) -> collections.Counter[str]:
        """How many messages the runners finished, by outcome."""
        if self._holder is not None:  # runners of partitions handed over count too
            return self._holder.outcomes
        total: collections.Counter[str] = collections.Counter()
        for runner in self.runners.values():
            total.update(runner.outcomes)
        return total

    @property
    def states(self) -> set[str]:
        """The states of the runners (empty: it runs no partition now)."""
        return {runner.state for runner in self.runners.values()}

    @property
    def spare(self) -> bool:
        """Settled with no partition of its own: every partition has another owner."""
        return not self.runners and self.leases is not None and self.leases.settled.is_set()

    async def verify_consumers(self) -> None:
        """Refuse to start if someone changed a partition's consumer.

        Raises:
            ConsumerDriftError: the first consumer found changed.
        """
        for view in await partition_views(self.store, self.name, source=self.spec.source):
            if view.info is None:
                continue  # created by its runner
            expected = expected_consumer(
                self.store, view.partition, source=self.spec.source, subjects=self.spec.subjects
            )
            if differences := expected.drift(view.info.get("config", {})):
                stream = self.store.config.stream_for(self.spec.source)
                raise ConsumerDriftError(stream, view.consumer, differences)

    async def verify_running(self) -> None:
        """The checks repeated while running: each runner's consumer, and the source's identity.

        Raises:
            ConsumerDriftError: a consumer was changed by someone else.
            EvidenceReplacedError: (or another error of ``verify``) the source was replaced.
        """
        for runner in list(self.runners.values()):
            await runner.verify_consumer()
        if self.spec.verify is not None:
            await self.spec.verify()

    async def source_end(self) -> int:
        """The sequence of the last event of the source stored now (0: none)."""
        state = await self.store.stream_state(self.store.config.stream_for(self.spec.source))
        return int(state["last_seq"])

    async def run(
        self,
        halt: asyncio.Event,
        *,
        until_idle: bool,
        processes: int,
        retried: Callable[[str, Callable[[], Awaitable[int]]], Awaitable[int | None]],
    ) -> None:
        """Run the partitions until ``halt``: those this worker holds a lease on.

        With ``until_idle`` (a batch job) of one process it runs every
        partition itself, each until it is idle; of several, the partitions it
        holds a lease on, until every partition is drained. A runner whose
        consumer someone changed stops the others (``drift``), and so does one
        that could not confirm its partition idle.

        Raises:
            IdleUnconfirmedError: a batch run of one process could not tell a
                partition drained (its stream's leader did not answer); every
                runner was stopped first.
        """
        if not until_idle:
            await self._run_leased(halt)
            return
        if processes > 1:
            through = await retried(f"{self.name}-end", self.source_end)
            if through is not None:
                await self._run_leased(halt, through=through, expected=processes)
            return
        self.runners = {p: self.runner_for(p) for p in range(self.partitions)}
        announce = asyncio.create_task(self._announce_started(), name=f"{self.name}-started")
        try:
            async with asyncio.TaskGroup() as group:
                for partition, runner in self.runners.items():
                    group.create_task(
                        self._run_one(runner, halt, until_idle=until_idle),
                        name=f"{self.name}-partition-{partition}",
                    )
        except* ConsumerDriftError as failed:
            first = failed.exceptions[0]
            assert isinstance(first, ConsumerDriftError)  # noqa: S101 - what except* matched
            self.drift = first
        finally:
            announce.cancel()
        if self.unconfirmed is not None:
            raise self.unconfirmed

    async def _run_leased(
        self, halt: asyncio.Event, *, through: int | None = None, expected: int = 1
    ) -> None:
        """Hold leases on a share of the partitions and run a runner for each one held.

        On ``halt`` the leases hand every partition over: each runner drains,
        then its lease is deleted, so the other workers take it at once.

        With ``through`` (a batch run of ``expected`` processes) the members
        first wait a moment for each other, so that each takes its share at
        once; each runner stops once its partition is idle, the leases are
        kept meanwhile, and ``halt`` is set once every partition has handled
        the source up to that sequence. Every log line of the run names this
        worker's ``member`` id.
        """
        batch = through is not None

        def drifted(exc: ConsumerDriftError) -> None:
            self.drift = exc
            _log.error("worker.consumer_drifted", projection=self.name, error=str(exc))
            halt.set()

        member = member_id()
        with structlog.contextvars.bound_contextvars(member=member):
            async with asyncio.TaskGroup() as group:
                holder = LeasedRunners(self.runner_for, group, on_drift=drifted, until_idle=batch)
                self._holder = holder
                self.runners = holder.runners
                self.leases = PartitionLeases(
                    self.store,
                    projection=self.name,
                    member=member,
                    partitions=self.partitions,
                    holder=holder,
                    round_seconds=_BATCH_ROUND_SECONDS if batch else None,
                    expected=expected,
                    gather_seconds=_BATCH_GATHER_SECONDS,
                )
                announce = group.create_task(self._announce_settled(), name=f"{self.name}-leases")
                watch = None
                if through is not None:
                    watch = group.create_task(
                        self._stop_when_drained(halt, holder, through), name=f"{self.name}-drained"
                    )
                try:
                    await self.leases.run(halt)
                finally:
                    announce.cancel()
                    if watch is not None:
                        watch.cancel()
            if batch and self.drained:
                _log.info(
                    "worker.drained",
                    projection=self.name,
                    through=through,
                    partitions=sorted(holder.ran),
                    outcomes=dict(holder.outcomes),
                )

    async def _stop_when_drained(
        self, halt: asyncio.Event, holder: LeasedRunners, through: int
    ) -> None:
        """Set ``halt`` once every partition handled the source up to ``through``.

        The end of a shared batch run: the other processes' partitions count as
        much as this one's, so a process whose own partitions are idle keeps its
        membership and leases until then (a crashed process's partitions are
        still picked up when its leases expire). Asked at once, whenever a
        runner of this worker finds its partition idle, and every half second.
        A partition held here whose runner is idle while events up to
        ``through`` are still unhandled there is run again.
        """
        while True:
            idle = holder.idle  # before the look: runners idle by then saw what it sees
            try:
                left = await undrained_partitions(
                    self.store, self.name, through, source=self.spec.source
                )
            except TransientStoreError as exc:
                _log.debug("worker.drain_check_failed", projection=self.name, error=str(exc))
            else:
                if not left:
                    self.drained = True
                    halt.set()
                    return
                owned = self.leases.owned if self.leases is not None else frozenset()
                for partition in sorted(left & idle & owned & holder.idle):
                    holder.start(partition)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAINED_CHECK_SECONDS):
                    await holder.went_idle.wait()
            holder.went_idle.clear()

    async def _announce_settled(self) -> None:
        assert self.leases is not None  # noqa: S101 - set before this task starts
        await self.leases.settled.wait()
        await self._announce_started()

    async def _run_one(
        self, runner: ProjectionRunner, halt: asyncio.Event, *, until_idle: bool
    ) -> None:
        # Its own stop event: a runner sets it when it is idle or drained, which
        # must not stop the other partitions.
        stop = asyncio.Event()
        relay = asyncio.create_task(halt.wait())
        relay.add_done_callback(lambda _: stop.set())
        try:
            await runner.run(stop, until_idle=until_idle)
        except ConsumerDriftError:
            halt.set()  # the other runners drain and stop
            raise
        except IdleUnconfirmedError as exc:
            # the batch cannot be said done: the other runners drain and stop, the run fails
            self.unconfirmed = self.unconfirmed or exc
            halt.set()
        finally:
            relay.cancel()

    async def _announce_started(self) -> None:
        """Set ``started`` and log ``projection.hosted`` once every current runner fetches."""
        for runner in list(self.runners.values()):
            await runner.started.wait()
        self.started.set()
        _log.info(
            "projection.hosted",
            projection=self.name,
            partitions=sorted(self.runners),
            of=self.partitions,
        )
