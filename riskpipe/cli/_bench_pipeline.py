"""The parts of ``riskpipe bench pipeline``: offered load, latency, and worker processes.

With ``--workers N,...``, each N starts N ``riskpipe worker`` processes against
the same private server, as N machines would run them, and waits until their
leases have settled (every partition owned, each worker holding its share).
Each round fills the stream while they are paused, then times them until every
partition has acknowledged it; the raw loop then runs over the same events,
the workers idle. CPU is read from each process (workers and server), so the
figures say where the time went.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from analyzers import AnalyzerConfig
from eventstore.baselines import raw_projection_loop
from projections import handled_floor, read_leases
from riskpipe.bench import Measurement, Sample, assessing_handler, process_cpu_seconds, timed
from riskpipe.demo import synthetic_evidence
from riskpipe.wiring import private_environment

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore import EventStore, RecordedEvent
    from riskpipe.server import NatsServer
    from riskpipe.settings import Settings

SETTLE_TIMEOUT = 120.0
"""Leases settle in about two rounds (a third of the TTL each) after the last join."""


@dataclass(frozen=True)
class PipelineRun:
    """What one ``bench pipeline`` invocation runs."""

    count: int
    entities: int
    rate: int
    latency_events: int
    runs: int
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    """What the workers score with; the plain loop scores with the same."""
    review: bool = False
    """Whether the workers also run the review projection, work the plain loop does not do."""


async def wait_acked(store: EventStore, last_seq: int) -> None:
    """Until every partition has acknowledged the evidence up to ``last_seq``."""
    async with asyncio.timeout(120):
        while True:
            if await handled_floor(store, "risk", source="evidence") >= last_seq:
                return
            await asyncio.sleep(0.05)  # polling the server's ack floors


async def _last_evidence_seq(store: EventStore) -> int:
    return int((await store.stream_state(store.config.stream_for("evidence")))["last_seq"])


async def warm_up(store: EventStore, run: PipelineRun, source: str) -> None:
    """Offer every entity one evidence and wait until it is handled.

    A worker reads an entity's state from its last assessment the first time
    it meets the entity, and keeps it after: without this, a latency run of
    fresh workers would time those first reads, not the steady state.
    """
    await store.append_many(synthetic_evidence(run.entities, source=source, entities=run.entities))
    last = await _last_evidence_seq(store)
    await wait_acked(store, last)


async def offered_latency(
    store: EventStore, run: PipelineRun, source: str = "bench-latency"
) -> tuple[float, float]:
    """Offer new events at ``run.rate`` to running workers; stored-to-assessed p50, p99 (s).

    ``source`` makes the events' ids: a second run needs another, or its events are duplicates.
    """
    first = await _last_evidence_seq(store) + 1
    await _offer(store, run, source)
    await wait_acked(store, first + run.latency_events - 1)
    stored = {rec.sequence: rec.stored_at async for rec in store.read_all(from_seq=first)}
    latencies = sorted(
        [
            (rec.stored_at - stored[seq]).total_seconds()
            async for rec in store.read_all(stream=store.config.stream_for("risk"))
            if (seq := _evidence_seq(rec)) in stored
        ]
    )
    return latencies[len(latencies) // 2], latencies[int((len(latencies) - 1) * 0.99)]


async def _offer(store: EventStore, run: PipelineRun, source: str) -> None:
    events = synthetic_evidence(run.latency_events, source=source, entities=run.entities)
    tick = 0.01
    per_tick = max(1, int(run.rate * tick))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(0, len(events), per_tick):
        await store.append_many(events[n : n + per_tick])
        await asyncio.sleep(max(0.0, started + (n // per_tick + 1) * tick - loop.time()))


def _evidence_seq(rec: RecordedEvent) -> int:
    evidence = (rec.event.data or {}).get("evidence") if rec.event is not None else None
    return int(str(evidence["sequence"])) if isinstance(evidence, dict) else 0


class WorkerProcesses:
    """N ``riskpipe worker`` processes on one server, each as its own machine would run it."""

    def __init__(
        self, server: NatsServer, count: int, fetch_timeout: float, *, review: bool = False
    ) -> None:
        self.url = server.url
        self.server_pid = server.pid
        self.count = count
        self.fetch_timeout = fetch_timeout
        self.review = review
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._dir = tempfile.TemporaryDirectory(prefix="riskpipe-bench-workers-")

    def environment(self, environ: dict[str, str]) -> dict[str, str]:
        """What each worker process runs with: ``environ`` pointed at the bench's server."""
        return private_environment(environ, self.url) | {
            "RISKPIPE_LOG_LEVEL": "error",
            "RISKPIPE_LOG_FORMAT": "json",
            "RISKPIPE_FETCH_TIMEOUT": str(self.fetch_timeout),
            "RISKPIPE_REVIEW": "true" if self.review else "false",
        }

    def start(self) -> None:
        """Start every process; each logs errors only, to a file of its own."""
        env = self.environment(dict(os.environ))
        for n in range(self.count):
            log = Path(self._dir.name) / f"worker-{n}.log"
            with log.open("wb") as out:
                self._procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "riskpipe", "worker", "--no-http"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self._logs.append(log)

    @property
    def pids(self) -> list[int]:
        """The processes' ids."""
        return [proc.pid for proc in self._procs]

    def check_running(self) -> None:
        """Raise with the process's log tail if any worker has exited."""
        for proc, log in zip(self._procs, self._logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                message = f"a bench worker exited with status {proc.returncode}"
                raise click.ClickException("\n".join([message, *tail]))

    def cpu_seconds(self) -> float | None:
        """User and system CPU of every worker so far (None where /proc is absent)."""
        seconds = [process_cpu_seconds(pid) for pid in self.pids]
        return None if None in seconds else sum(s for s in seconds if s is not None)

    def pause(self) -> None:
        """Freeze every worker (SIGSTOP)."""
        for proc in self._procs:
            proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let every worker run again (SIGCONT)."""
        for proc in self._procs:
            proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM every worker (a clean leave), then SIGKILL any that hangs."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused one must wake up to leave
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._dir.cleanup()


@contextlib.contextmanager
def running_workers(
    server: NatsServer, count: int, fetch_timeout: float, *, review: bool = False
) -> Iterator[WorkerProcesses]:
    """``count`` worker processes for the block's duration, stopped however it ends."""
    workers = WorkerProcesses(server, count, fetch_timeout, review=review)
    try:
        workers.start()
        yield workers
    finally:
        workers.stop()


async def wait_settled(store: EventStore, workers: WorkerProcesses) -> float:
    """Wait until every partition is leased and each worker holds its share; seconds taken."""
    partitions = store.config.partitions
    shares = sorted(
        partitions // workers.count + (1 if n < partitions % workers.count else 0)
        for n in range(workers.count)
    )
    started = time.monotonic()
    async with asyncio.timeout(SETTLE_TIMEOUT):
        while True:
            workers.check_running()
            leases = await read_leases(store, "risk")
            owned = collections.Counter(record.owner for record in leases.values())
            if len(leases) == partitions and sorted(owned.values()) == shares:
                return time.monotonic() - started
            await asyncio.sleep(0.2)  # leases change on the workers' rounds


@dataclass
class _CpuWatch:
    """CPU seconds of the workers and the server over one timed window."""

    workers: WorkerProcesses
    start: tuple[float | None, float | None] = (None, None)
    spent: list[tuple[float, float]] = field(default_factory=list)

    def __enter__(self) -> None:
        self.start = (self.workers.cpu_seconds(), self._server())

    def __exit__(self, *exc: object) -> None:
        worker0, server0 = self.start
        worker1, server1 = self.workers.cpu_seconds(), self._server()
        if None not in (worker0, worker1, server0, server1):
            self.spent.append((worker1 - worker0, server1 - server0))  # type: ignore[operator]

    def _server(self) -> float | None:
        pid = self.workers.server_pid
        return process_cpu_seconds(pid) if pid is not None else None


@dataclass
class WorkersFigures:
    """What one N measured: its throughput runs, the raw loop's, and CPU per event."""

    count: int
    projection: Measurement
    raw: Measurement
    settle_seconds: list[float] = field(default_factory=list)
    server_cpu_us: list[float] = field(default_factory=list)
    raw_server_cpu_us: list[float] = field(default_factory=list)
    p50_ms: float = 0.0
    p99_ms: float = 0.0


async def measure_workers(
    store: EventStore,
    server: NatsServer,
    settings: Settings,
    run: PipelineRun,
    counts: list[int],
) -> list[WorkersFigures]:
    """Throughput for each N with the raw loop in the same rounds, then latency for each N.

    The latency runs come last: the raw loop's consumer then never meets their evidence.
    """
    figures = []
    for count in counts:
        mine = WorkersFigures(
            count,
            Measurement(f"riskpipe worker x {count} process(es) (their CPU)"),
            Measurement(f"plain nats-py loop, same analyzer (beside {count} process(es))"),
        )
        with running_workers(server, count, settings.fetch_timeout, review=run.review) as workers:
            mine.settle_seconds.append(await wait_settled(store, workers))
            for n in range(run.runs):
                await _throughput_round(store, workers, run, mine, f"w{count}-{n}")
            workers.check_running()
        figures.append(mine)
    for mine in figures:
        with running_workers(
            server, mine.count, settings.fetch_timeout, review=run.review
        ) as workers:
            await wait_settled(store, workers)
            await warm_up(store, run, f"bench-warm-w{mine.count}")
            p50, p99 = await offered_latency(store, run, f"bench-latency-w{mine.count}")
            workers.check_running()
        mine.p50_ms, mine.p99_ms = round(p50 * 1000, 2), round(p99 * 1000, 2)
    return figures


async def _throughput_round(
    store: EventStore,
    workers: WorkerProcesses,
    run: PipelineRun,
    mine: WorkersFigures,
    source: str,
) -> None:
    """Fill the stream while the workers are paused, then time them until it is all handled.

    Pausing (SIGSTOP) for the fraction of a second the append takes keeps the
    ingest's cost, client and server, out of the workers' window, as the raw
    loop's window has none: both start from a filled stream. The pause is far
    shorter than a lease's local deadline, so nobody loses a partition.
    """
    last = await _last_evidence_seq(store)
    events = synthetic_evidence(run.count, source=f"bench-{source}", entities=run.entities)
    workers.pause()
    try:
        await store.append_many(events)
    finally:
        workers.resume()
    cpu = _CpuWatch(workers)
    with cpu:
        sample = await timed(run.count, partial(wait_acked, store, last + run.count))
    if cpu.spent:
        worker_s, server_s = cpu.spent[-1]
        sample = Sample(sample.rate, worker_s * 1e6 / run.count)
        mine.server_cpu_us.append(server_s * 1e6 / run.count)
    mine.projection.add(sample)
    loop = partial(
        raw_projection_loop,
        workers.url,
        stream=store.config.stream_for("evidence"),
        filter_subject=f"{store.config.prefix}.evidence.>",
        count=run.count,
        handle=assessing_handler(run.analyzer),
    )
    raw_cpu = _CpuWatch(workers)
    with raw_cpu:
        mine.raw.add(await timed(run.count, loop))
    if raw_cpu.spent:
        mine.raw_server_cpu_us.append(raw_cpu.spent[-1][1] * 1e6 / run.count)


def as_figures(measured: list[WorkersFigures]) -> dict[str, Any]:
    """The JSON figures: per N its rate, CPU, the raw loop's, latency; scaling against N=1."""

    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    rows: list[dict[str, Any]] = [
        {
            "workers": m.count,
            "projection_per_s": round(m.projection.median),
            "workers_cpu_us": round(m.projection.median_cpu_us, 1),
            "server_cpu_us": median(m.server_cpu_us),
            "raw_per_s": round(m.raw.median),
            "raw_cpu_us": round(m.raw.median_cpu_us, 1),
            "raw_server_cpu_us": median(m.raw_server_cpu_us),
            "ratio": round(m.projection.median / m.raw.median, 3),
            "settle_s": median(m.settle_seconds),
            "latency_p50_ms": m.p50_ms,
            "latency_p99_ms": m.p99_ms,
        }
        for m in measured
    ]
    one = next((m for m in measured if m.count == 1), None)
    if one is not None:
        for m, row in zip(measured, rows, strict=True):
            row["speedup"] = round(m.projection.median / one.projection.median, 3)
            row["p99_vs_one"] = round(m.p99_ms / one.p99_ms, 3) if one.p99_ms else None
    return {"by_workers": rows}
