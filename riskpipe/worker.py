"""Wiring of a worker process: store, analyzer, enricher, projection, runner, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import structlog
from prometheus_client import Gauge
from pydantic import ValidationError

from analyzers import ANALYZER_VERSION, AnalyzerConfig, load_config
from analyzers.enrichment import EnricherSettings, HttpEnricher
from eventstore import StoreMetrics
from eventstore.errors import (
    ConnectionClosedError,
    ConsumerDriftError,
    EventStoreError,
    NotProvisionedError,
    TransientStoreError,
)
from projections import DeadLetterQueue, ProjectionMetrics, RunnerSettings
from projections.errors import EvidenceReplacedError
from projections.learning import LiveConfigs, UnknownConfigVersionError, read_config_book
from projections.middleware import (
    chain,
    dead_letters,
    log_context,
    pause_on_open_breaker,
    retry,
    timeout,
    tracing,
)
from projections.review import (
    DeadLetterReview,
    DecisionBook,
    ReviewPolicy,
    ReviewProjection,
    load_policy,
)
from projections.risk import RiskMetrics, RiskProjection, verify_evidence_identity
from projections.shadow import InvalidShadowVersionError, shadow_output, shadow_projection
from riskpipe.errors import RiskpipeError
from riskpipe.hosting import Hosted, HostedSpec, ProjectionHost
from riskpipe.http import HealthServer

if TYPE_CHECKING:
    import collections
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from eventstore import EventStore
    from projections import Handler, PartitionLeases, ProjectionRunner
    from riskpipe.settings import Settings

__all__ = [
    "ShadowConfigError",
    "ShadowRun",
    "Worker",
    "retried_at_start",
    "shadow_run",
    "utc_now",
]

_log = structlog.get_logger(__name__)
_WATCH_SECONDS = 0.5
_DECISIONS_SECONDS = 1.0
"""How often the worker reads new review decisions: a decision applies within about this."""
"""How often the worker looks whether its connection is closed for good."""
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


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    """Set ``target`` once ``source`` is set."""
    await source.wait()
    target.set()


def review_policy(settings: Settings) -> ReviewPolicy:
    """The review policy from ``settings.review_policy``, or the defaults.

    Raises:
        InvalidConfigError: the file is not a valid review policy.
    """
    return load_policy(settings.review_policy) if settings.review_policy else ReviewPolicy()


class ShadowConfigError(RiskpipeError):
    """The config version of ``--shadow`` cannot run: unknown, or not loadable by this build."""


@dataclass(frozen=True, slots=True)
class ShadowRun:
    """A proposed config version to score every evidence with, beside the live config."""

    version: str
    config: AnalyzerConfig

    @property
    def projection(self) -> str:
        """Its projection's name, ``shadow-<version>``."""
        return shadow_projection(self.version)


async def shadow_run(store: EventStore, version: str) -> ShadowRun:
    """The shadow run of proposed config ``version``, its config read from the config log.

    Raises:
        ShadowConfigError: ``version`` is not a version name, was never
            proposed, or its config is not valid for this build's analyzer.
    """
    try:
        shadow_projection(version)
        proposal = (await read_config_book(store)).proposal(version)
    except (InvalidShadowVersionError, UnknownConfigVersionError) as exc:
        raise ShadowConfigError(f"cannot run a shadow: {exc}") from exc
    try:
        config = proposal.config()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise ShadowConfigError(
            f"cannot run a shadow: config version {version!r} is not a valid config for this"
            f" build's analyzer {ANALYZER_VERSION} ({where}: {first['msg']})"
        ) from exc
    return ShadowRun(version, config)


class Worker:
    """A worker process's projections: build it, ``run`` it, ask it whether it is ready.

    It hosts the risk projection (over evidence), with ``shadow`` a shadow
    run's risk projection (over the same evidence, with a proposed config,
    writing to ``SHADOW``), and, unless ``RISKPIPE_REVIEW=false``, the review
    projection (over assessments), each with its own consumers, leases and
    dead letters.
    """

    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        registry: CollectorRegistry,
        *,
        shadow: ShadowRun | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.registry = registry
        if store.metrics is None:
            store.metrics = StoreMetrics(registry)
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
        """Why the worker stopped: a consumer, or the evidence stream, was changed."""
        self.enricher = self._enricher()
        self.decisions = DecisionBook(store, review_policy(settings)) if settings.review else None
        """People's decisions, fed back into scoring (docs/review.md); ``None``: review is off."""
        self._decisions_missing = False
        risk_metrics = RiskMetrics(registry)
        self.configs = LiveConfigs(store, metrics=risk_metrics)
        """The config live at each evidence position (docs/promotion.md)."""
        self.projection = RiskProjection(
            store,
            config=analyzer_config(settings),
            configs=self.configs,
            clock=utc_now,
            name=settings.projection,
            enricher=self.enricher,
            enrich_patterns=frozenset(settings.enrichment_patterns),
            degraded_mode=settings.degraded_mode,
            metrics=risk_metrics,
            reviews=self.decisions.signal if self.decisions is not None else None,
        )
        self.shadow: RiskProjection | None = None
        """The shadow run's projection: scores like the live one, writes to ``SHADOW`` only."""
        if shadow is not None:
            self.shadow = RiskProjection(
                store,
                config=shadow.config,
                clock=utc_now,
                name=shadow.projection,
                enricher=self.enricher,
                enrich_patterns=frozenset(settings.enrichment_patterns),
                degraded_mode=settings.degraded_mode,
                reviews=self.decisions.signal if self.decisions is not None else None,
                output=shadow_output(shadow.version),
            )
            _log.info(
                "worker.shadow",
                projection=shadow.projection,
                version=shadow.version,
                config_fingerprint=shadow.config.fingerprint(),
            )
        runner_settings = RunnerSettings(
            batch=settings.batch,
            fetch_timeout=settings.fetch_timeout,
            max_in_flight=settings.max_in_flight,
            ack_wait=settings.ack_wait_seconds,
            max_deliver=settings.max_deliver,
            drain_timeout=settings.drain_timeout_seconds,
        )
        self.hosts = self._hosts(runner_settings, ProjectionMetrics(registry))
        """Every projection this worker runs; the risk projection first."""
        self.dlqs = {
            host.name: DeadLetterQueue(store, host.name, clock=utc_now) for host in self.hosts
        }
        self.started = asyncio.Event()
        """Set once every projection's runners have their consumers in place and fetch."""

    def _hosts(self, settings: RunnerSettings, metrics: ProjectionMetrics) -> list[ProjectionHost]:
        """The risk projection's host, a shadow run's, then the review projection's (if on)."""
        store, name = self.store, self.settings.projection
        risk = HostedSpec(
            self.projection,
            source="evidence",
            handler=self._handler(self.projection, pause=True),
            verify=lambda: verify_evidence_identity(store, name),
            before_batch=self.configs.refresh,
            prepare=self.projection.prepare,
        )
        hosts = [ProjectionHost(store, risk, settings=settings, metrics=metrics)]
        if self.shadow is not None:  # the live host checks the evidence's identity for both
            spec = HostedSpec(
                self.shadow,
                source="evidence",
                handler=self._handler(self.shadow, pause=True),
                prepare=self.shadow.prepare,
            )
            hosts.append(ProjectionHost(store, spec, settings=settings, metrics=metrics))
        if self.settings.review:
            review = ReviewProjection(
                store,
                policy=review_policy(self.settings),
                clock=utc_now,
                name=self.settings.review_projection,
                book=self.decisions,
            )
            spec = HostedSpec(
                review,
                source="risk",
                handler=self._handler(review, pause=False),
                before_batch=review.before_batch,
            )
            hosts.append(ProjectionHost(store, spec, settings=settings, metrics=metrics))
            if review.policy.open_on_dead_letters is not None:
                letters = DeadLetterReview(
                    store,
                    policy=review.policy,
                    clock=utc_now,
                    watches=name,
                    name=f"{self.settings.review_projection}-dlq",
                )
                spec = HostedSpec(
                    letters,
                    source="dlq",
                    handler=self._handler(letters, pause=False),
                    subjects=letters.subjects(),
                )
                hosts.append(ProjectionHost(store, spec, settings=settings, metrics=metrics))
        return hosts

    @property
    def risk(self) -> ProjectionHost:
        """The risk projection's host."""
        return self.hosts[0]

    @property
    def dlq(self) -> DeadLetterQueue:
        """The risk projection's dead-letter queue."""
        return self.dlqs[self.risk.name]

    @property
    def runners(self) -> dict[int, ProjectionRunner]:
        """The risk projection's runners, by partition."""
        return self.risk.runners

    @property
    def leases(self) -> PartitionLeases | None:
        """The risk projection's partition leases."""
        return self.risk.leases

    @property
    def drained(self) -> bool:
        """A shared batch run found every partition of every projection drained."""
        return all(host.drained for host in self.hosts)

    @property
    def outcomes(self) -> collections.Counter[str]:
        """How many evidence messages the risk projection's runners finished, by outcome."""
        return self.risk.outcomes

    def runner_for(self, partition: int) -> ProjectionRunner:
        """The risk projection's runner of one partition."""
        return self.risk.runner_for(partition)

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

    def _handler(self, projection: Hosted, *, pause: bool) -> Handler:
        """The projection's handler in the middleware chain (``pause``: on an open breaker)."""
        middlewares = [
            tracing,
            log_context,
            dead_letters(
                self.store.config,
                utc_now,
                already_handled=projection.is_handled,
                max_bytes=lambda: self.store.payload_limit("dlq"),
            ),
        ]
        if pause:
            reset = self.settings.enrichment_reset_seconds
            middlewares.append(pause_on_open_breaker(probe_after=min(5.0, reset)))
        middlewares += [
            retry(
                attempts=self.settings.retry_attempts,
                redelivery_backoff=self.settings.redelivery_backoff_seconds,
            ),
            timeout(self.settings.handler_timeout_seconds),
        ]
        return chain(projection.handle, *middlewares)

    async def observe_dlq(self) -> None:
        """Refresh the DLQ depth and oldest-age gauges of every projection."""
        for name, dlq in self.dlqs.items():
            # depth first: it needs only stream info, the age needs a read permission too
            self._dlq_depth.labels(name).set(await dlq.depth())
            age = await dlq.oldest_age()
            self._dlq_age.labels(name).set(age or 0.0)

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
        """Halt the worker once a consumer (or the evidence) is found changed by someone else.

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
                for host in self.hosts:
                    await host.verify_running()
            except (ConsumerDriftError, EvidenceReplacedError) as exc:
                self.drift = exc
                _log.error("worker.consumer_drifted", error=str(exc))
                halt.set()
            except EventStoreError as exc:  # deleted, or NATS away: the runner copes
                _log.debug("worker.consumer_check_failed", error=str(exc))

    def readiness(self) -> tuple[bool, str]:
        """Ready when connected, the consumers are set up, and consumption is not paused."""
        if self.drift is not None:
            return False, str(self.drift)
        if not self.store.client.connected:
            return False, "not connected to NATS"
        states = set().union(*(host.states for host in self.hosts))
        if "paused" in states:
            return False, "paused: the enrichment dependency is unavailable (circuit open)"
        for host in self.hosts:
            if not host.runners and not host.spare:
                return False, f"projection {host.name} starting"
        if states - {"running"}:
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
        """Serve HTTP (optionally) and run the projections until ``stop`` or idle.

        ``until_idle``: a batch run, one projection after the other (the
        review projection reads what the risk projection wrote). Of one
        process (``processes``), it runs every partition itself without
        leases, each until it is idle. Of several processes started together,
        each holds leases on a share of the partitions, and goes on once every
        partition (its own and the others') has handled what was stored when
        it started.

        The checks at start (partitions, consumers, evidence identity) are
        retried while NATS fails them transiently, for the store's election
        window; ``stop`` meanwhile returns at once.

        Raises:
            ConsumerDriftError: a consumer was changed by someone else, found
                at start or while running (then the projections were stopped first).
            EvidenceReplacedError: the evidence stream no longer holds the
                evidence the assessments answer (deleted and created again),
                found at start or while running.
            ConnectionClosedError: the connection to NATS closed for good (nats-py
                does not reconnect after, e.g., a protocol error the server
                closed it for); the projections were stopped first. A supervisor
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
        announce = asyncio.create_task(self._announce_started(), name="worker-started")
        follow = asyncio.create_task(self._follow_decisions(halt), name="decisions")
        try:
            await self._run_hosts(halt, until_idle=until_idle, processes=processes)
        finally:
            for task in (watch, guard, observer, announce, follow):
                task.cancel()
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

    async def _run_hosts(self, halt: asyncio.Event, *, until_idle: bool, processes: int) -> None:
        """Run every projection: together, or (a batch run) one after the other."""

        async def retried(step: str, operation: Callable[[], Awaitable[int]]) -> int | None:
            return await retried_at_start(self.store, halt, step, operation)

        if until_idle:
            for host in self.hosts:
                if halt.is_set():
                    break
                # each its own halt: a drained projection must not stop the next one
                done = asyncio.Event()
                relay = asyncio.create_task(_relay(halt, done))
                try:
                    await host.run(done, until_idle=True, processes=processes, retried=retried)
                finally:
                    relay.cancel()
                if self._drifted(host, halt):
                    return
            return
        async with asyncio.TaskGroup() as group:
            for host in self.hosts:
                group.create_task(
                    self._run_host(host, halt, processes=processes, retried=retried),
                    name=f"host-{host.name}",
                )

    async def _run_host(
        self,
        host: ProjectionHost,
        halt: asyncio.Event,
        *,
        processes: int,
        retried: Callable[[str, Callable[[], Awaitable[int]]], Awaitable[int | None]],
    ) -> None:
        await host.run(halt, until_idle=False, processes=processes, retried=retried)
        self._drifted(host, halt)

    def _drifted(self, host: ProjectionHost, halt: asyncio.Event) -> bool:
        """Take a host's consumer drift as the worker's (and halt the others)."""
        if host.drift is None:
            return False
        self.drift = host.drift
        halt.set()
        return True

    async def _checks_at_start(self) -> bool:
        """Take P from the stream and check consumers and evidence: True once all pass.

        The decisions made so far are read too, so that the first assessments
        already reflect them.
        """
        await self.store.adopt_partitions()
        for host in self.hosts:
            await host.verify_consumers()
        await verify_evidence_identity(self.store, self.settings.projection)
        await self._read_decisions()
        return True

    async def _read_decisions(self) -> None:
        """Fold the review events stored since the last look into the decision book."""
        if self.decisions is None:
            return
        try:
            if read := await self.decisions.refresh():
                _log.info("worker.decisions_read", events=read, at=self.decisions.position)
        except NotProvisionedError as exc:  # made before review existed: `riskpipe init`
            if not self._decisions_missing:
                _log.warning("worker.decisions_unavailable", error=str(exc))
            self._decisions_missing = True
        else:
            self._decisions_missing = False

    async def _follow_decisions(self, stop: asyncio.Event) -> None:
        """Keep the decision book current: a look every ``_DECISIONS_SECONDS``."""
        while self.decisions is not None and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DECISIONS_SECONDS):
                    await stop.wait()
            try:
                await self._read_decisions()
            except EventStoreError as exc:  # NATS away: the next look tries again
                _log.debug("worker.decisions_failed", error=str(exc))

    async def _announce_started(self) -> None:
        """Set ``started`` and log ``worker.started`` once every projection's runners fetch."""
        for host in self.hosts:
            await host.started.wait()
        self.started.set()
        _log.info(
            "worker.started",
            projection=self.settings.projection,
            partitions=sorted(self.runners),
            of=self.store.config.partitions,
            projections={host.name: sorted(host.runners) for host in self.hosts},
        )
