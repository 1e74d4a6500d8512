"""Benchmark plumbing: a private server, timing, medians and ratios."""

from __future__ import annotations

import gc
import os
import resource
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from analyzers import (
    EVIDENCE_RECORDED,
    EVIDENCE_RECORDED_V2,
    EntityRiskState,
    Evidence,
    EvidenceData,
    EvidenceDataV2,
    assess,
)
from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from analyzers import AnalyzerConfig

__all__ = [
    "Measurement",
    "Sample",
    "assessing_handler",
    "private_server",
    "process_cpu_seconds",
    "timed",
]


def assessing_handler(
    config: AnalyzerConfig,
) -> Callable[[str, bytes, int], tuple[str, bytes, str]]:
    """The plain projection's work per evidence, for the raw baseline loop: the same analyzer.

    Decodes the stored bytes with orjson, validates the data with the
    analyzer's own model (v1 read as v2), scores it against the entity's
    state kept in memory, and returns the assessment as JSON with a
    ``Nats-Msg-Id`` from the evidence's stream position, as a worker's. No
    fence, no catch-up, no dead letters, no metrics: what a user would write
    instead.
    """
    states: dict[str, EntityRiskState] = {}
    initial = EntityRiskState.initial()
    loads, parse_time = orjson.loads, datetime.fromisoformat
    models: dict[str, type[EvidenceData | EvidenceDataV2]] = {
        EVIDENCE_RECORDED: EvidenceData,
        EVIDENCE_RECORDED_V2: EvidenceDataV2,
    }

    def handle(subject: str, payload: bytes, sequence: int) -> tuple[str, bytes, str]:
        envelope = loads(payload)
        at = parse_time(envelope["time"])
        data = models[envelope["type"]].model_validate(envelope["data"], context={"event_time": at})
        evidence = Evidence.from_data(
            data, event_id=envelope["id"], source=envelope["source"], sequence=sequence,
            event_time=at,
        )  # fmt: skip
        assessment, states[subject] = assess(states.get(subject, initial), evidence, config=config)
        result = f"benchraw.{envelope['tenant']}.{envelope['subject']}"
        return result, assessment.model_dump_json().encode(), f"risk-{sequence}"

    return handle


@contextmanager
def private_server() -> Iterator[NatsServer]:
    """A throwaway nats-server with JetStream in a temp dir, on a free port."""
    with tempfile.TemporaryDirectory(prefix="riskpipe-bench-") as tmp:
        server = NatsServer(data_dir=Path(tmp) / "nats")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@dataclass(frozen=True)
class Sample:
    """One run of a path: items per second, and CPU microseconds per item."""

    rate: float
    cpu_us: float
    """This process's CPU time (user and system, with its children that ended during
    the run) per item: the client's cost; the server's is not included."""


@dataclass
class Measurement:
    """Rates (items per second) and CPU costs of one benchmarked path over several runs."""

    name: str
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        """Count one run."""
        self.rates.append(sample.rate)
        self.cpu_us.append(sample.cpu_us)

    @property
    def median(self) -> float:
        """The median rate."""
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def median_cpu_us(self) -> float:
        """The median CPU microseconds per item."""
        return statistics.median(self.cpu_us) if self.cpu_us else 0.0


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def timed(items: int, work: Callable[[], Awaitable[object]]) -> Sample:
    """Run ``work`` once; its rate in ``items`` per second and its CPU cost per item.

    Garbage left by preparing the run (building its events) is collected
    before the clock starts, so no path pays for another's allocations.
    """
    gc.collect()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - start
    return Sample(items / elapsed, (_cpu_seconds() - cpu) * 1e6 / items)


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of a live process, from /proc (None without /proc, or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
