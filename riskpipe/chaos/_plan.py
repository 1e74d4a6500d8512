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
    "CLUSTER_ONLY",
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
    "kill-worker",
    "pause-worker",
    "kill-server",
    "pause-server",
    "rolling-restart",
    "partition-worker",
    "partition-node",
    "duplicate",
    "poison",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
Scenario = Literal[
    "kill-worker",
    "pause-worker",
    "kill-server",
    "pause-server",
    "rolling-restart",
    "partition-worker",
    "partition-node",
    "duplicate",
    "poison",
    "mixed",
]
SCENARIOS: tuple[Scenario, ...] = get_args(Scenario)
_PROCESS_FAULTS = frozenset(
    {
        "kill-worker",
        "pause-worker",
        "kill-server",
        "pause-server",
        "rolling-restart",
        "partition-worker",
        "partition-node",
    }
)
_CUTS = ("refuse", "blackhole", "sever")
CLUSTER_ONLY: frozenset[FaultKind] = frozenset({"rolling-restart", "partition-node"})
"""Faults that need a cluster: a lone node restarted in lame duck mode is just down, and a
lone node has no other node to be cut off from."""
_ROLLING_SECONDS = 10.0
"""What one node's lame-duck restart is planned to take (the schedule leaves room for it)."""


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
    how: str = ""
    """How a partition cuts the network: ``refuse``, ``blackhole`` or ``sever``."""


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
    if nodes == 1:
        kinds = [kind for kind in kinds if kind not in CLUSTER_ONLY]
    if not kinds:
        return []
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    faults: list[PlannedFault] = []
    at = rng.uniform(1.0, 3.0)
    while True:
        kind = rng.choice(kinds)
        target, duration, how = _draw(kind, rng, workers=workers, nodes=nodes, timing=timing)
        length = _ROLLING_SECONDS * nodes if kind == "rolling-restart" else duration
        if at + length > seconds:
            return faults
        faults.append(PlannedFault(round(at, 3), kind, target, round(duration, 3), how))
        at += length + rng.uniform(0.5, 2.5)


def _draw(
    kind: FaultKind, rng: random.Random, *, workers: int, nodes: int, timing: Timing
) -> tuple[int, float, str]:
    """A fault's target, duration and (for a partition) how it cuts, drawn from ``rng``."""
    if kind == "kill-worker":
        return rng.randrange(workers), rng.uniform(0.0, 3.0), ""
    if kind == "pause-worker":
        longer = timing.ack_wait + timing.lease_ttl
        return rng.randrange(workers), longer + rng.uniform(0.5, 2.0), ""
    if kind == "kill-server":
        return rng.randrange(nodes), rng.uniform(1.0, 10.0 if nodes > 1 else 5.0), ""
    if kind == "rolling-restart":
        return 0, 0.0, ""  # it takes what it takes: each node back before the next
    if kind in {"partition-worker", "partition-node"}:
        worker = kind == "partition-worker"
        target, how = rng.randrange(workers if worker else nodes), rng.choice(_CUTS)
        # a worker's cut long enough, at times, for its leases to run out
        longest = timing.ack_wait + timing.lease_ttl + 2.0 if worker else 10.0
        return target, 0.0 if how == "sever" else rng.uniform(1.0, longest), how
    return rng.randrange(nodes), rng.uniform(1.0, 5.0), ""
