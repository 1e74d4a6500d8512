"""Benchmarks quote the client's CPU per item beside every rate."""

from __future__ import annotations

import asyncio
import os
import time

from riskpipe.bench import Measurement, timed


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


async def test_cpu_per_item_counts_work_in_this_process() -> None:
    """Busy work shows as CPU per item; waiting does not."""
    busy = await timed(100, lambda: asyncio.to_thread(_spin, 0.05))
    idle = await timed(100, lambda: asyncio.sleep(0.05))
    assert busy.cpu_us > 300  # 0.05 s over 100 items is 500 µs each
    assert idle.cpu_us < busy.cpu_us / 5


async def test_cpu_of_children_that_ended_counts_too() -> None:
    """A child process's CPU, once it has ended, counts as the run's (replays fork children)."""

    async def child() -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _spin(0.05)
            os._exit(0)
        await asyncio.to_thread(os.waitpid, pid, 0)

    sample = await timed(100, child)
    assert sample.cpu_us > 300


def test_a_measurement_keeps_medians_of_rate_and_cpu() -> None:
    """Medians are taken separately over the runs' rates and CPU costs."""
    m = Measurement("path")
    for rate, cpu in ((10.0, 3.0), (30.0, 1.0), (20.0, 2.0)):
        m.rates.append(rate)
        m.cpu_us.append(cpu)
    assert (m.median, m.median_cpu_us) == (20.0, 2.0)
