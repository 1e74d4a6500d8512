"""Benchmark plumbing: a private server, timing, medians and ratios."""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = ["Measurement", "private_server", "timed"]


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


@dataclass
class Measurement:
    """Rates (items per second) of one benchmarked path over several runs."""

    name: str
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median rate."""
        return statistics.median(self.rates) if self.rates else 0.0


async def timed(items: int, work: Callable[[], Awaitable[object]]) -> float:
    """Run ``work`` once and return ``items`` per second.

    Garbage left by preparing the run (building its events) is collected
    before the clock starts, so no path pays for another's allocations.
    """
    gc.collect()
    start = time.perf_counter()
    await work()
    return items / (time.perf_counter() - start)
