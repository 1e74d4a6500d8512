"""Wiring of a worker process: store, analyzer, enricher, projection, runner, HTTP."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import structlog
from prometheus_client import Gauge

from analyzers import AnalyzerConfig, load_config
from analyzers.enrichment import EnricherSettings, HttpEnricher
from eventstore import StoreMetrics
from eventstore.errors import (
    ConnectionClosedError,
    ConsumerDriftError,
    EventStoreError,
    TransientStoreError,
)
from projections import (
    DeadLetterQueue,
    PartitionLeases,
    ProjectionMetrics,
    ProjectionRunner,
    RunnerSettings,
    consumer_name,
    expected_consumer,
    partition_views,
    undrained_partitions,
)
from projections.errors import EvidenceReplacedError
from projections.middleware import (
    chain,
    dead_letters,
    log_context,
    pause_on_open_breaker,
    retry,
    timeout,
    tracing,
)
from projections.risk import RiskMetrics, RiskProjection, verify_evidence_identity
from riskpipe.http import HealthServer
from riskpipe.ownership import LeasedRunners, member_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from eventstore import EventStore
    from projections import Handler
    from riskpipe.settings import Settings

__all__ = ["Worker", "retried_at_start", "utc_now"]

_log = structlog.get_logger(__name__)
_WATCH_SECONDS = 0.5
"""How often the worker looks whether its connection is closed for good."""
_BATCH_ROUND_SECONDS = 1.0
"""A shared batch run's lease rounds: processes started together split the work this soon."""
_BATCH_GATHER_SECONDS = 5.0
"""How long the processes of a batch run wait for each other before taking partitions."""
_DRAINED_CHECK_SECONDS = 0.5
"""How often a shared batch run asks whether every partition is drained."""
_T = TypeVar("_T")


def utc_now() -> datetime:
    """The wall clock, in UTC: the only clock the worker reads."""
    return datetime.now(UTC)


async def retried_at_start(
    store: EventStore, stop: asyncio.Event, step: str, operation: Callable[[], Awaitable[_T]]
) -> _T | None:
    """``operation()``, retried while NATS fails it transiently, for the election window.

    A worker started while a cluster elects its leaders would otherwise exit
    at its first check. Each retry is a ``worker.start_retry`` line. ``None``
    when ``stop`` comes first.

    Raises:
        TransientStoreError: still failing once the store's election window passed.
    """

    def retrying(error: TransientStoreError, attempt: int) -> None:
        _log.warning("worker.start_retry", step=step, error=str(error), attempt=attempt)

    return await store.retry_transient(operation, on_retry=retrying, stop=stop)


def analyzer_config(settings: Settings) -> AnalyzerConfig:
    """The analyzer config from ``settings.analyzer_config``, or the defaults.

    Raises:
        InvalidConfigError: the file is not a valid analyzer config.
    """
    return load_config(settings.analyzer_config) if settings.analyzer_config else AnalyzerConfig()


class Worker:
    """One risk projection worker: build it, ``run`` it, ask it whether it is ready."""

    def __init__(self, store: EventStore, settings: Settings, registry: CollectorRegistry) -> None:
        self.store = store
        self.settings = settings
        self.registry = registry
        if store.metrics is None:
            store.metrics = StoreMetrics(registry)
        self.dlq = DeadLetterQueue(store, settings.projection, clock=utc_now)
        self._dlq_depth = Gauge(
            "riskpipe_dlq_depth_messages",
            "Dead letters of the projection still in the queue.",
            ["projection"],
            registry=registry,
        )
        self._dlq_age = Gauge(
            "riskpipe_dlq_oldest_age_seconds",
            "Age of the oldest dead letter still in the queue (0 when empty).",
            ["projection"],
            registry=registry,
        )
        self.http: HealthServer | None = None
        self.drift: ConsumerDriftError | EvidenceReplacedError | None = None
        """Why the worker stopped: its consumer, or the evidence stream, was changed."""
        """Why the worker stopped, when someone changed its consumer."""
        self.enricher = self._enricher()
        self.projection = RiskProjection(
            store,
            config=analyzer_config(settings),
            clock=utc_now,
            name=settings.projection,
            enricher=self.enricher,
            degraded_mode=settings.degraded_mode,
            metrics=RiskMetrics(registry),
        )
        self._handler_chain = self._handler()
        self._runner_settings = RunnerSettings(
            batch=settings.batch,
            fetch_timeout=settings.fetch_timeout,
            max_in_flight=settings.max_in_flight,
            ack_wait=settings.ack_wait_seconds,
            max_deliver=settings.max_deliver,
            drain_timeout=settings.drain_timeout_seconds,
        )
        self._runner_metrics = ProjectionMetrics(registry)
        self.runners: dict[int, ProjectionRunner] = {}
        """The partitions this worker consumes, each by its own runner and durable consumer."""
        self.leases: PartitionLeases | None = None
        """This worker's partition leases (not used by a batch run of one process)."""
        self._holder: LeasedRunners | None = None
        self.drained = False
        """A shared batch run found every partition drained (and stopped for that)."""
        self.started = asyncio.Event()
        """Set once every runner has its consumer in place and fetches."""

    def _partition_settings(self) -> RunnerSettings:
        """The runner settings of one partition: a share of the worker's in-flight budget.

        ``RISKPIPE_MAX_IN_FLIGHT`` is the worker's: split over the store's P
        partitions (at least 1 each), so a worker holding every partition holds
        at most that many messages, not P times as many. Messages held longer
        than the ack wait are redelivered: a budget per partition would let a
        deep backlog on 16 partitions outgrow it.
        """
        share = self._runner_settings.max_in_flight // self.store.config.partitions
        return dataclasses.replace(self._runner_settings, max_in_flight=max(1, share))

    def runner_for(self, partition: int) -> ProjectionRunner:
        """The runner of one partition: consumer ``<projection>-<partition>``, its subjects only."""
        return ProjectionRunner(
            self.store,
            name=self.settings.projection,
            consumer=consumer_name(self.settings.projection, partition),
            handler=self._handler_chain,
            on_commit=self.projection.committed,
            on_conflict=self.projection.conflicted,
            filter_subject=self.store.config.partition_filter(partition),
            settings=self._partition_settings(),
            metrics=self._runner_metrics,
        )

    @property
    def outcomes(self) -> collections.Counter[str]:
        """How many messages the worker's runners finished, by outcome."""
        if self._holder is not None:  # runners of partitions handed over count too
            return self._holder.outcomes
        total: collections.Counter[str] = collections.Counter()
        for runner in self.runners.values():
            total.update(runner.outcomes)
        return total

    def _enricher(self) -> HttpEnricher | None:
        if not self.settings.enrichment_url:
            return None
        return HttpEnricher(
            EnricherSettings(
                url=self.settings.enrichment_url,
                timeout_seconds=self.settings.enrichment_timeout_seconds,
                max_attempts=self.settings.enrichment_attempts,
                fail_max=self.settings.enrichment_fail_max,
                reset_timeout_seconds=self.settings.enrichment_reset_seconds,
            ),
            registry=self.registry,
        )

    def _handler(self) -> Handler:
        return chain(
            self.projection.handle,
            tracing,
            log_context,
            dead_letters(
                self.store.config,
                utc_now,
                already_handled=self.projection.is_handled,
                max_bytes=lambda: self.store.payload_limit("dlq"),
            ),
            pause_on_open_breaker(probe_after=min(5.0, self.settings.enrichment_reset_seconds)),
            retry(
                attempts=self.settings.retry_attempts,
                redelivery_backoff=self.settings.redelivery_backoff_seconds,
            ),
            timeout(self.settings.handler_timeout_seconds),
        )

    async def observe_dlq(self) -> None:
        """Refresh the DLQ depth and oldest-age gauges."""
        # depth first: it needs only stream info, the age needs a read permission too
        self._dlq_depth.labels(self.settings.projection).set(await self.dlq.depth())
        age = await self.dlq.oldest_age()
        self._dlq_age.labels(self.settings.projection).set(age or 0.0)

    async def _observe_dlq(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.observe_dlq()
            except EventStoreError as exc:
                _log.debug("worker.dlq_observe_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await stop.wait()

    def liveness(self) -> tuple[bool, str]:
        """Alive unless the connection to NATS is closed for good (then restart the process)."""
        if self.store.client.closed:
            return False, f"NATS connection closed for good: {self.store.client.closed_reason}"
        return True, "ok"

    async def _watch_connection(self, stop: asyncio.Event, halt: asyncio.Event) -> None:
        """Set ``halt`` on ``stop``, or once the connection is closed for good."""
        while not stop.is_set() and not self.store.client.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WATCH_SECONDS):
                    await stop.wait()
        halt.set()

    async def _watch_consumer(self, halt: asyncio.Event) -> None:
        """Halt the worker once its consumer is found changed by someone else.

        A consumer whose filter or delivery was changed delivers nothing (or
        only headers) while every number looks healthy: checked every
        ``consumer_check_seconds``.
        """
        while not halt.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.consumer_check_seconds):
                    await halt.wait()
            if halt.is_set():
                return
            try:
                for runner in list(self.runners.values()):
                    await runner.verify_consumer()
                await verify_evidence_identity(self.store, self.settings.projection)
            except (ConsumerDriftError, EvidenceReplacedError) as exc:
                self.drift = exc
                _log.error("worker.consumer_drifted", error=str(exc))
                halt.set()
            except EventStoreError as exc:  # deleted, or NATS away: the runner copes
                _log.debug("worker.consumer_check_failed", error=str(exc))

    def readiness(self) -> tuple[bool, str]:
        """Ready when connected, the consumer is set up, and consumption is not paused."""
        if self.drift is not None:
            return False, str(self.drift)
        if not self.store.client.connected:
            return False, "not connected to NATS"
        states = {runner.state for runner in self.runners.values()}
        if "paused" in states:
            return False, "paused: the enrichment dependency is unavailable (circuit open)"
        if not self.runners:
            # a spare, once settled: every partition has another owner
            spare = self.leases is not None and self.leases.settled.is_set()
            return spare, "ready" if spare else "projection starting"
        if states != {"running"}:
            return False, f"projection {', '.join(sorted(states - {'running'}))}"
        return True, "ready"

    async def run(
        self,
        stop: asyncio.Event,
        *,
        until_idle: bool = False,
        http: bool = True,
        processes: int = 1,
    ) -> None:
        """Serve HTTP (optionally) and run the projection until ``stop`` or idle.

        ``until_idle``: a batch run. Of one process (``processes``), it runs
        every partition itself without leases, each until it is idle. Of
        several processes started together, each holds leases on a share of the
        partitions, and returns once every partition (its own and the others')
        has handled the evidence stored when it started.

        The checks at start (partitions, consumers, evidence identity) are
        retried while NATS fails them transiently, for the store's election
        window; ``stop`` meanwhile returns at once.

        Raises:
            ConsumerDriftError: the consumer was changed by someone else, found
                at start or while running (then the projection was stopped first).
            EvidenceReplacedError: the evidence stream no longer holds the
                evidence the assessments answer (deleted and created again),
                found at start or while running.
            ConnectionClosedError: the connection to NATS closed for good (nats-py
                does not reconnect after, e.g., a protocol error the server
                closed it for); the projection was stopped first. A supervisor
                restarts the process.
        """
        if not await retried_at_start(self.store, stop, "checks", self._checks_at_start):
            return  # stopped first
        server = None
        if http:
            server = self.http = HealthServer(
                registry=self.registry,
                readiness=self.readiness,
                liveness=self.liveness,
                host=self.settings.http_host,
                port=self.settings.http_port,
            )
            await server.start()
            _log.info("worker.http", host=server.host, port=server.port)
        halt = asyncio.Event()
        watch = asyncio.create_task(self._watch_connection(stop, halt), name="nats-watch")
        guard = asyncio.create_task(self._watch_consumer(halt), name="consumer-watch")
        observer = asyncio.create_task(self._observe_dlq(halt), name="dlq-observer")
        try:
            await self._run_partitions(halt, until_idle=until_idle, processes=processes)
        finally:
            watch.cancel()
            guard.cancel()
            observer.cancel()
            if server is not None:
                await server.stop()
            if self.enricher is not None:
                await self.enricher.aclose()
        if self.drift is not None:
            raise self.drift
        if self.store.client.closed and not stop.is_set():
            raise ConnectionClosedError(
                f"NATS connection closed for good ({self.store.client.closed_reason});"
                " the worker stopped so that it can be restarted"
            )

    async def _checks_at_start(self) -> bool:
        """Take P from the stream and check consumers and evidence: True once all pass."""
        await self.store.adopt_partitions()
        await self._verify_consumers()
        await verify_evidence_identity(self.store, self.settings.projection)
        return True

    async def _evidence_end(self) -> int:
        """The sequence of the last evidence stored now (0: none)."""
        return int((await self.store.stream_state(self.store.config.evidence_stream))["last_seq"])

    async def _verify_consumers(self) -> None:
        """Refuse to start, before any partition runs, if someone changed a partition's consumer.

        Raises:
            ConsumerDriftError: the first consumer found changed.
        """
        for view in await partition_views(self.store, self.settings.projection):
            if view.info is None:
                continue  # created by its runner
            expected = expected_consumer(self.store, view.partition)
            if differences := expected.drift(view.info.get("config", {})):
                stream = self.store.config.evidence_stream
                raise ConsumerDriftError(stream, view.consumer, differences)

    async def _run_partitions(
        self, halt: asyncio.Event, *, until_idle: bool, processes: int
    ) -> None:
        """Run the partitions until ``halt``: those this worker holds a lease on.

        With ``until_idle`` (a batch job) of one process it runs every
        partition itself, each until it is idle; of several, the partitions it
        holds a lease on, until every partition is drained. A runner that fails
        (its consumer changed by someone else) stops the others.
        """
        if not until_idle:
            await self._run_leased(halt)
            return
        if processes > 1:
            through = await retried_at_start(self.store, halt, "evidence", self._evidence_end)
            if through is not None:
                await self._run_leased(halt, through=through, expected=processes)
            return
        self.runners = {p: self.runner_for(p) for p in range(self.store.config.partitions)}
        announce = asyncio.create_task(self._announce_started(), name="runners-started")
        try:
            async with asyncio.TaskGroup() as group:
                for partition, runner in self.runners.items():
                    group.create_task(
                        self._run_one(runner, halt, until_idle=until_idle),
                        name=f"partition-{partition}",
                    )
        except* ConsumerDriftError as failed:
            first = failed.exceptions[0]
            assert isinstance(first, ConsumerDriftError)  # noqa: S101 - what except* matched
            self.drift = first
        finally:
            announce.cancel()

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
        the evidence up to that sequence. Every log line of the run names this
        worker's ``member`` id.
        """
        batch = through is not None

        def drifted(exc: ConsumerDriftError) -> None:
            self.drift = exc
            _log.error("worker.consumer_drifted", error=str(exc))
            halt.set()

        member = member_id()
        with structlog.contextvars.bound_contextvars(member=member):
            async with asyncio.TaskGroup() as group:
                holder = LeasedRunners(self.runner_for, group, on_drift=drifted, until_idle=batch)
                self._holder = holder
                self.runners = holder.runners
                self.leases = PartitionLeases(
                    self.store,
                    projection=self.settings.projection,
                    member=member,
                    partitions=self.store.config.partitions,
                    holder=holder,
                    round_seconds=_BATCH_ROUND_SECONDS if batch else None,
                    expected=expected,
                    gather_seconds=_BATCH_GATHER_SECONDS,
                )
                announce = group.create_task(self._announce_settled(), name="leases-settled")
                watch = None
                if through is not None:
                    watch = group.create_task(
                        self._stop_when_drained(halt, holder, through), name="drained-watch"
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
                    through=through,
                    partitions=sorted(holder.ran),
                    outcomes=dict(holder.outcomes),
                )

    async def _stop_when_drained(
        self, halt: asyncio.Event, holder: LeasedRunners, through: int
    ) -> None:
        """Set ``halt`` once every partition handled the evidence up to ``through``.

        The end of a shared batch run: the other processes' partitions count as
        much as this one's, so a process whose own partitions are idle keeps its
        membership and leases until then (a crashed process's partitions are
        still picked up when its leases expire). Asked at once, whenever a
        runner of this worker finds its partition idle, and every half second.
        A partition held here whose runner is idle while evidence up to
        ``through`` is still unhandled there is run again.
        """
        while True:
            idle = holder.idle  # before the look: runners idle by then saw what it sees
            try:
                left = await undrained_partitions(self.store, self.settings.projection, through)
            except TransientStoreError as exc:
                _log.debug("worker.drain_check_failed", error=str(exc))
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
        finally:
            relay.cancel()

    async def _announce_started(self) -> None:
        """Set ``started`` and log ``worker.started`` once every current runner fetches."""
        for runner in list(self.runners.values()):
            await runner.started.wait()
        self.started.set()
        _log.info(
            "worker.started",
            projection=self.settings.projection,
            partitions=sorted(self.runners),
            of=self.store.config.partitions,
        )
