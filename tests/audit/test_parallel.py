"""Replay in several processes: the report one process gives, on real and on tampered logs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

import pytest
from support.events import evidence
from support.pipeline import demo_run, run_worker

from analyzers import AnalyzerConfig
from projections.audit import ReplayPartError, ReplayReport, ReplayScope, replay
from projections.audit._parallel import OWN_SHARE, auto_jobs, partition
from projections.audit._replay import _Replay

if TYPE_CHECKING:
    from eventstore import EventStore, RawMessage
    from riskpipe.server import NatsServer


def _document(report: ReplayReport) -> dict[str, Any]:
    """The report as JSON, without what depends on how it was run."""
    document = report.as_dict()
    del document["elapsed_seconds"], document["jobs"]
    return document


async def _same_in_parts(store: EventStore, jobs: int, **options: Any) -> ReplayReport:
    """Replay in one process and in ``jobs``; assert the reports agree; the one-process one."""
    alone = await replay(store, jobs=1, **options)
    parts = await replay(store, jobs=jobs, **options)
    assert (alone.jobs, parts.jobs) == (1, jobs)
    assert _document(parts) == _document(alone)
    return alone


async def test_a_real_run_replayed_in_parts_reports_what_one_process_does(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Every count, entity, finding and level change agrees, for whole and partial scopes."""
    await demo_run(store, nats_server.url, events=600)
    for jobs in (2, 3):
        report = await _same_in_parts(store, jobs)
        assert report.ok
        assert (report.totals.identical, report.totals.dead_lettered) == (600, 4)
    await _same_in_parts(store, 2, scope=ReplayScope(tenant="acme"))
    tail = await _same_in_parts(store, 2, scope=ReplayScope(from_seq=200, until_seq=450))
    assert tail.totals.evidence == 251
    lower = AnalyzerConfig.model_validate(
        {"thresholds": {"medium": 0.1, "high": 0.2, "critical": 0.3}}
    )
    what_if = await _same_in_parts(store, 2, config=lower, what_if=True)
    assert what_if.level_changes is not None
    assert what_if.level_changes.upgrades > 0


async def _append_forged(store: EventStore, entity: str, evidence_of: str, name: str) -> int:
    """Copy ``evidence_of``'s last assessment onto ``entity``'s risk subject; its risk seq."""
    last = await store.last(store.config.subject("risk", "t1", evidence_of))
    assert last is not None
    assert last.event is not None
    forged = last.event.model_copy(update={"id": name, "subject": entity})
    return (await store.append(forged)).sequence


async def test_a_tampered_log_replayed_in_parts_reports_what_one_process_does(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Forgeries within an entity and across parts read the same; so does a truncated list."""
    events = [
        evidence(f"x{i}", entity=f"e{i % 6}", minute=i, severity=("low", "high")[i % 2])
        for i in range(60)
    ]
    await store.append_many(events)
    await run_worker(store, nats_server.url)
    split = await partition(store, ReplayScope(), 2)
    assert split is not None
    parts = {entity: split.assigned["t1", entity] for entity in (f"e{n}" for n in range(6))}
    here = next(e for e, part in parts.items() if part == 0)
    there = next(e for e, part in parts.items() if part == 1)
    second = await _append_forged(store, "e3", "e3", "second")
    across = await _append_forged(store, here, there, "across")
    await store.append_unchecked("risk", "t1", there, b"{not json", msg_id="garbage")
    report = await _same_in_parts(store, 2)
    assert not report.ok
    by_seq = {f.assessment_sequence: f for f in report.findings}
    assert by_seq[second].kind == by_seq[across].kind == "extra"
    assert "another entity's subject" in by_seq[across].detail
    assert (by_seq[across].entity, report.totals.unreadable) == (here, 1)
    truncated = await _same_in_parts(store, 2, max_findings=2)
    assert len(truncated.findings) == 2
    assert truncated.findings == sorted(report.findings, key=lambda f: f.order)[:2]


async def test_parts_balance_the_work_and_hold_every_entity_once(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The replaying process, which also reads for everyone, gets the lighter part."""
    await demo_run(store, nats_server.url, events=600)
    split = await partition(store, ReplayScope(), 3)
    assert split is not None
    assert split.parts == 3
    loads = [0, 0, 0]
    for subject, count in (await store.subjects(store.config.stream_for("evidence"), ">")).items():
        loads[split.part_of(subject)] += count
    assert sum(loads) == 604
    assert loads[0] < min(loads[1:]), loads
    assert loads[0] == pytest.approx(OWN_SHARE * sum(loads[1:]) / 2, rel=0.35)
    later = split.part_of(store.config.subject("evidence", "acme", "someone-new"))
    assert later == split.part_of(store.config.subject("risk", "acme", "someone-new"))
    assert await partition(store, ReplayScope(), 1) is None
    assert await partition(store, ReplayScope(tenant="acme", entity="user-carol"), 4) is None


async def test_a_failing_part_fails_the_replay_and_leaves_no_process(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that raises is reported with its error; one killed, with its exit code."""
    await demo_run(store, nats_server.url, events=200)
    parent, evidence_of = os.getpid(), _Replay._evidence  # noqa: SLF001 - the step to break

    async def broken(self: _Replay, raw: RawMessage) -> None:
        if os.getpid() != parent:
            raise RuntimeError("disk on fire")
        await evidence_of(self, raw)

    monkeypatch.setattr(_Replay, "_evidence", broken)
    with pytest.raises(ReplayPartError, match="failed: RuntimeError: disk on fire") as failed:
        await replay(store, jobs=2)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert multiprocessing.active_children() == []

    async def killed(self: _Replay, raw: RawMessage) -> None:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        await evidence_of(self, raw)

    monkeypatch.setattr(_Replay, "_evidence", killed)
    with pytest.raises(ReplayPartError, match=r"ended without a result \(exit code -9\)"):
        await replay(store, jobs=2)
    assert multiprocessing.active_children() == []
    monkeypatch.setattr(_Replay, "_evidence", evidence_of)
    assert (await replay(store, jobs=2)).ok


async def test_a_replay_that_cannot_fork_runs_in_one_process(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of processes, the replay still gives the whole report, from one process."""
    await demo_run(store, nats_server.url, events=200)

    def no_fork(*_args: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("projections.audit._replay.fork_child", no_fork)
    report = await replay(store, jobs=2)
    assert (report.ok, report.jobs, report.totals.identical) == (True, 1, 200)
    assert multiprocessing.active_children() == []


async def test_replays_in_parts_leave_no_thread_behind_for_the_next_fork(
    nats_server: NatsServer, store: EventStore
) -> None:
    """After a replay in parts, the threads are those from before it, so the next forks no more."""
    await demo_run(store, nats_server.url, events=200)
    before = set(threading.enumerate())  # the test server's log reader, for one
    for _ in range(3):
        report = await replay(store, jobs=2)
        assert (report.ok, report.jobs) == (True, 2)
        assert set(threading.enumerate()) == before


def test_the_default_is_a_process_per_cpu_for_a_large_enough_range() -> None:
    """One process per 500 evidence positions, per CPU, at most 4; never none."""
    cpus = len(os.sched_getaffinity(0))
    assert auto_jobs(0) == auto_jobs(499) == 1
    assert auto_jobs(1000) == min(cpus, 2)
    assert auto_jobs(10**7) == min(cpus, 4)
