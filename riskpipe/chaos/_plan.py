"""A chaos run's fault schedule, drawn from its seed: the same seed, the same schedule.

Process faults (kill or pause a worker or a server node) come one at a time:
each is healed before the next is injected, a short random gap apart, so a
run's recovery is measured after every heal. Producer faults (duplicate
publishes, poison messages) are drawn per append and overlap everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "FAULT_KINDS",
    "SCENARIOS",
    "FaultKind",
    "PlannedFault",
    "Scenario",
    "Timing",
    "plan_faults",
    "scenario_faults",
]

FaultKind = Literal[
    "kill-worker", "pause-worker", "kill-server", "pause-server", "duplicate", "poison"
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
Scenario = Literal[
    "kill-worker", "pause-worker", "kill-server", "pause-server", "duplicate", "poison", "mixed"
]
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
_PROCESS_FAULTS = frozenset({"kill-worker", "pause-worker", "kill-server", "pause-server"})


@dataclass(frozen=True, slots=True)
class Timing:
    """The settings a fault's duration follows: a paused worker must outlive both."""

    ack_wait: float
    lease_ttl: float


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """One process fault: when (seconds from the start), what, on which, for how long."""

    at: float
    kind: FaultKind
    target: int
    """The worker's or the node's index."""
    duration: float
    """Seconds until the heal: the restart of what was killed, the wake-up of what was paused."""


def scenario_faults(scenario: Scenario) -> frozenset[FaultKind]:
    """The fault kinds a scenario injects (``mixed``: all of them)."""
    return frozenset(FAULT_KINDS) if scenario == "mixed" else frozenset({scenario})


def plan_faults(  # noqa: PLR0913 - the scenario, its length and seed, and what it runs on
    scenario: Scenario, seconds: float, seed: int, *, workers: int, nodes: int, timing: Timing
) -> list[PlannedFault]:
    """The process faults of a run, in time order, each healed before ``seconds`` ends.

    A worker is paused for longer than the ack wait and the lease TTL
    together, so that it wakes up as a zombie whose partitions and messages
    went to others meanwhile.
    """
    kinds = sorted(scenario_faults(scenario) & _PROCESS_FAULTS)
    if not kinds:
        return []
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    faults: list[PlannedFault] = []
    at = rng.uniform(1.0, 3.0)
    while True:
        kind = rng.choice(kinds)
        if kind == "kill-worker":
            target, duration = rng.randrange(workers), rng.uniform(0.0, 3.0)
        elif kind == "pause-worker":
            target = rng.randrange(workers)
            duration = timing.ack_wait + timing.lease_ttl + rng.uniform(0.5, 2.0)
        elif kind == "kill-server":
            target, duration = rng.randrange(nodes), rng.uniform(1.0, 10.0 if nodes > 1 else 5.0)
        else:
            target, duration = rng.randrange(nodes), rng.uniform(1.0, 5.0)
        if at + duration > seconds:
            return faults
        faults.append(PlannedFault(round(at, 3), kind, target, round(duration, 3)))
        at += duration + rng.uniform(0.5, 2.5)
