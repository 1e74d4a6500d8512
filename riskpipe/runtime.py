"""Process-wide runtime tuning of the riskpipe commands (not of the libraries).

CPython collects its youngest generation after every 700 surviving container
allocations, and each older collection walks every object that survived
before: in a process that keeps thousands of events, futures and assessments
in flight, that is a large share of the CPU for no gain, since riskpipe's data
is acyclic and freed by reference counting. The commands therefore collect the
young generation less often, and freeze what start-up allocated (modules,
compiled schemas) out of every later collection. A library user of the event
store keeps whatever their own process sets.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]


def tune_gc(young_threshold: int) -> None:
    """Collect the young generation every ``young_threshold`` allocations; 0 leaves CPython's."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
