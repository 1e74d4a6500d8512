"""The fault schedule: reproducible from its seed, within the run, one fault at a time."""

from __future__ import annotations

import itertools

import pytest

from riskpipe.chaos import SCENARIOS, Timing, plan_faults

TIMING = Timing(ack_wait=4.0, lease_ttl=4.0)


@pytest.mark.parametrize("seed", [1, 2, 99])
def test_the_same_seed_gives_the_same_schedule(seed: int) -> None:
    """A run can be repeated exactly: the schedule is a function of its seed."""
    first = plan_faults("mixed", 120, seed, workers=2, nodes=3, timing=TIMING)
    assert first == plan_faults("mixed", 120, seed, workers=2, nodes=3, timing=TIMING)
    assert first != plan_faults("mixed", 120, seed + 1, workers=2, nodes=3, timing=TIMING)


def test_faults_come_one_at_a_time_and_end_within_the_run() -> None:
    """Each fault is healed before the next starts, and the last before the load ends."""
    plan = plan_faults("mixed", 900, 7, workers=3, nodes=3, timing=TIMING)
    assert len(plan) > 10
    assert {fault.kind for fault in plan} == {
        "kill-worker",
        "pause-worker",
        "kill-server",
        "pause-server",
        "rolling-restart",
        "partition-worker",
        "partition-node",
    }
    for before, after in itertools.pairwise(plan):
        assert before.at + before.duration < after.at
    assert plan[-1].at + plan[-1].duration <= 900
    assert all(0 <= f.target < 3 for f in plan)


def test_a_paused_worker_outlives_its_ack_wait_and_its_lease() -> None:
    """So that it wakes up a zombie: its messages and its partitions went to others meanwhile."""
    plan = plan_faults("pause-worker", 200, 3, workers=2, nodes=1, timing=TIMING)
    assert plan
    assert all(f.kind == "pause-worker" and f.duration > 8.0 for f in plan)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in ("duplicate", "poison")])
def test_a_scenario_injects_only_its_own_faults(scenario: str) -> None:
    """A single-fault scenario's schedule holds that fault only (mixed: every process fault)."""
    plan = plan_faults(scenario, 120, 5, workers=2, nodes=3, timing=TIMING)  # type: ignore[arg-type]
    assert plan
    if scenario != "mixed":
        assert {fault.kind for fault in plan} == {scenario}


@pytest.mark.parametrize("scenario", ["duplicate", "poison"])
def test_producer_faults_need_no_process_schedule(scenario: str) -> None:
    """Duplicates and poison are the producers' doing: no process is touched."""
    assert plan_faults(scenario, 120, 5, workers=2, nodes=1, timing=TIMING) == []  # type: ignore[arg-type]


def test_one_node_gets_no_rolling_restart_and_no_node_partition() -> None:
    """A lone node restarted in lame duck mode is just a server down; it has no peer to lose."""
    assert plan_faults("rolling-restart", 300, 1, workers=2, nodes=1, timing=TIMING) == []
    assert plan_faults("partition-node", 300, 1, workers=2, nodes=1, timing=TIMING) == []
    kinds = {f.kind for f in plan_faults("mixed", 300, 1, workers=2, nodes=1, timing=TIMING)}
    assert not kinds & {"rolling-restart", "partition-node"}
    assert "kill-server" in kinds


def test_a_node_partition_cuts_one_node_of_three_each_way() -> None:
    """Any of the nodes, by any of the three cuts, for up to 10 s (a sever: at once)."""
    plan = plan_faults("partition-node", 600, 4, workers=2, nodes=3, timing=TIMING)
    assert {f.target for f in plan} == {0, 1, 2}
    assert {f.how for f in plan} == {"refuse", "blackhole", "sever"}
    assert all(f.duration == 0 for f in plan if f.how == "sever")
    assert all(f.duration <= 10.0 for f in plan)


def test_a_partition_says_how_it_cuts() -> None:
    """Each cut is one of the three; a sever is instant, the others may outlast a lease."""
    plan = plan_faults("partition-worker", 600, 2, workers=2, nodes=1, timing=TIMING)
    assert {f.how for f in plan} == {"refuse", "blackhole", "sever"}
    assert all(f.duration == 0 for f in plan if f.how == "sever")
    assert max(f.duration for f in plan) > TIMING.ack_wait + TIMING.lease_ttl
    assert all(f.how == "" for f in plan_faults("kill-worker", 60, 2, workers=2, nodes=1,
                                                timing=TIMING))  # fmt: skip
