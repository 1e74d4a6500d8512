"""The read model of a real pipeline: a worker's assessments, dead letters, replays and purges.

Whatever way the rows were built (in one go, in passes as the log grew, by a
process killed with SIGKILL and started again), they equal a rebuild from
the start of the log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import delete, select
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import demo_run, run_worker
from support.readmodel import ReadModelProcess, rows

from analyzers import RiskLevel
from projections import DeadLetterQueue
from projections.readmodel import (
    Database,
    ReadModel,
    ReadModelReader,
    apply_assessment,
    apply_audit,
    apply_dead_letter,
    apply_review,
    generation_tables,
)
from projections.review import Actor, ReviewService, all_cases
from riskpipe.readmodel import read_model
from riskpipe.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _more_evidence(store: EventStore, tag: str, count: int = 40) -> None:
    """``count`` new evidence events over four entities of two tenants."""
    events = [
        evidence(
            f"{tag}-{i}",
            tenant=("t1", "t2")[i % 2],
            entity=f"e{i % 4}",
            severity=("low", "high", "critical", "medium")[i % 4],
            minute=i,
        )
        for i in range(count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


def _settings(url: str, database_url: str) -> Settings:
    return Settings(nats_url=url, database_url=database_url, readmodel_batch=7)


@pytest.fixture
async def model(
    store: EventStore, nats_server: NatsServer, database_url: str
) -> AsyncIterator[ReadModel]:
    """The read model of the store in a fresh database, batches of 7 messages."""
    db = Database(database_url)
    try:
        yield read_model(store, db, _settings(nats_server.url, database_url), CollectorRegistry())
    finally:
        await db.dispose()


async def _review(store: EventStore) -> int:
    """People act on the cases the worker opened: assign, decide, escalate, reopen; how many."""
    service = ReviewService(store, clock=lambda: datetime.now(UTC))
    alice = Actor(name="alice", role="reviewer")
    opened = [c for entity in await all_cases(store) for c in entity.cases]
    assert len(opened) >= 3, "the demo's evidence opens cases"
    first, second, third = opened[:3]
    await service.assign(first.tenant, first.entity, first.number, "alice", by=alice)
    await service.decide(
        first.tenant, first.entity, first.number, "confirmed", "seen it", by=alice,
        level=RiskLevel.CRITICAL,
    )  # fmt: skip
    await service.decide(second.tenant, second.entity, second.number, "escalated", "?", by=alice)
    await service.decide(third.tenant, third.entity, third.number, "false_positive", "no", by=alice)
    await service.reopen(third.tenant, third.entity, third.number, "new facts", by=alice)
    return len(opened)


async def _same_cases(store: EventStore, reader: ReadModelReader) -> None:
    """Every case the log holds is a row saying what the fold of its events says."""
    for entity in await all_cases(store):
        for case in entity.cases:
            row = await reader.get_case(
                tenants=[case.tenant], tenant=case.tenant, entity=case.entity, number=case.number
            )
            assert row is not None
            decision = case.decision
            assert (row.status, row.assignee, row.opened_at, row.version) == (
                case.status, case.assignee, case.opened_at, entity.version
            )  # fmt: skip
            assert (row.outcome, row.decided_at) == (
                decision.outcome if decision else None, case.decided_at
            )  # fmt: skip
            assert row.level == case.opened.assessment.level


async def _operate_dlq(store: EventStore, url: str) -> tuple[int, int]:
    """Replay the first dead letter and purge the second; score the replay; their DLQ seqs."""
    queue = DeadLetterQueue(store, "risk")
    letters = await queue.list()
    assert len(letters) >= 2
    await queue.replay(letters[0].sequence, actor="carol", reason="fixed")
    await queue.purge(letters[1].sequence, actor="carol", reason="junk")
    await run_worker(store, url)
    return letters[0].sequence, letters[1].sequence


async def test_passes_as_the_log_grows_equal_a_rebuild(
    store: EventStore, nats_server: NatsServer, model: ReadModel, database_url: str
) -> None:
    """Applied in passes between which the log grows, the rows equal a rebuild's, row for row."""
    await demo_run(store, nats_server.url, events=80)
    await model.run(asyncio.Event(), until_idle=True)
    first = await rows(database_url)
    assert len(first["assessments"]) > 5
    queued = await ReadModelReader(model.db).dead_letters(tenants=["acme", "globex"])
    assert len(queued.items) == len(first["dead_letters"]) == 4
    assert {d.state for d in queued.items} == {"queued"}
    replayed, purged = await _operate_dlq(store, nats_server.url)
    cases = await _review(store)
    await _more_evidence(store, "late")
    await run_worker(store, nats_server.url)
    await model.run(asyncio.Event(), until_idle=True)
    incremental = await rows(database_url)
    assert incremental != first
    result = await model.rebuild()
    assert result is not None
    assert (result.generation, result.replaced) == (2, 1)
    assert await rows(database_url) == incremental
    reader = ReadModelReader(model.db)
    await _same_cases(store, reader)
    assert len(incremental["cases"]) >= cases
    assert [(d[4], d[5]) for d in incremental["decisions"]] == [
        ("confirmed", "critical"), ("escalated", None), ("false_positive", None)
    ]  # outcome, level  # fmt: skip
    page = await reader.dead_letters(tenants=["acme", "globex"], limit=500)
    states = {d.dlq_seq: d for d in page.items}
    assert states[replayed].state == "replayed"
    assert states[replayed].replayed_as is not None
    assert states[replayed].error_type is not None
    assert states[purged].state == "purged"
    assert states[purged].error_type is None  # the purge deleted it from the log


async def test_the_latest_assessment_is_the_last_on_risk(
    store: EventStore, nats_server: NatsServer, model: ReadModel
) -> None:
    """latest_assessment is the entity's last assessment on RISK, and nothing for another tenant."""
    await _more_evidence(store, "a", count=12)
    await run_worker(store, nats_server.url)
    await model.run(asyncio.Event(), until_idle=True)
    last = None
    async for rec in store.read("t1", "e0", category="risk"):
        last = rec
    assert last is not None
    assert last.event is not None
    found = await ReadModelReader(model.db).latest_assessment(
        tenants=["t1"], tenant="t1", entity="e0"
    )
    assert found is not None
    data: dict[str, Any] = last.event.data or {}
    assert (found.risk_seq, found.level, found.score) == (
        last.sequence, data["assessment"]["level"], data["assessment"]["score"]
    )  # fmt: skip
    assert found.evidence_seq == data["evidence"]["sequence"]
    assert (
        await ReadModelReader(model.db).latest_assessment(tenants=["t2"], tenant="t1", entity="e0")
        is None
    )


async def test_applying_the_log_again_changes_nothing(
    store: EventStore, nats_server: NatsServer, model: ReadModel, database_url: str
) -> None:
    """Each event of RISK, DLQ, AUDIT and REVIEW applied again past the tracking: no row changes."""
    await demo_run(store, nats_server.url, events=80)
    await _operate_dlq(store, nats_server.url)
    await _review(store)
    await model.run(asyncio.Event(), until_idle=True)
    before = await rows(database_url)
    assert before["cases"]
    assert before["decisions"]
    tables = generation_tables(1)
    applies = {
        "RISK": lambda c, t, i: apply_assessment(c, t, i, projection="risk"),
        "DLQ": apply_dead_letter,
        "AUDIT": apply_audit,
        "REVIEW": apply_review,
    }
    async with model.db.write() as conn:
        for stream, apply in applies.items():
            async for batch in store.read_batches(stream=stream):
                for raw in batch:
                    await apply(conn, tables, model.item(raw))
    assert await rows(database_url) == before
    async with model.db.read() as conn:
        positions = dict(
            (await conn.execute(select(tables.tracking.c.stream, tables.tracking.c.last_seq))).all()
        )
    for stream in applies:
        assert positions[stream] == (await store.stream_state(stream))["last_seq"]


async def _holding_the_write_lock(database_url: str) -> Any:
    """A transaction that blocks every batch of the read model until it is rolled back."""
    if database_url.startswith("sqlite"):
        con = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        return con
    con = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    await con.execute("BEGIN")
    await con.execute("LOCK TABLE rm_tracking_g1 IN ACCESS EXCLUSIVE MODE")
    return con


async def _blocked(database_url: str, lock: Any) -> None:
    """Wait until another session waits for the lock (PostgreSQL shows it; SQLite cannot)."""
    if database_url.startswith("sqlite"):
        return
    async with asyncio.timeout(60):
        # another process's state: there is no event to await
        while not await lock.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _release(lock: Any) -> None:
    if isinstance(lock, sqlite3.Connection):
        lock.execute("ROLLBACK")
        lock.close()
    else:
        await lock.execute("ROLLBACK")
        await lock.close()


@pytest.mark.slow
async def test_a_run_killed_mid_stream_resumes_to_a_rebuild(
    store: EventStore, nats_server: NatsServer, database_url: str
) -> None:
    """SIGKILL with a batch in flight: nothing of it lands; restarted, the rows equal a rebuild."""
    env = {
        "RISKPIPE_NATS_URL": nats_server.url,
        "RISKPIPE_DATABASE_URL": database_url,
        "RISKPIPE_READMODEL_BATCH": "5",
        "RISKPIPE_READMODEL_POLL_SECONDS": "0.1",
        "RISKPIPE_LOG_LEVEL": "debug",
    }
    await demo_run(store, nats_server.url, events=60)
    risk_last = (await store.stream_state("RISK"))["last_seq"]
    process = ReadModelProcess(env)
    process.start()
    try:
        process.wait_for("readmodel.caught_up", lambda x: x["positions"]["RISK"] == risk_last)
        lock = await _holding_the_write_lock(database_url)
        try:
            await _more_evidence(store, "mid")
            await run_worker(store, nats_server.url)
            process.wait_for(
                "readmodel.reading", lambda x: x["stream"] == "RISK" and x["after"] == risk_last
            )
            await _blocked(database_url, lock)
        finally:
            assert process.kill() == -9
            await _release(lock)
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()
    killed = await rows(database_url)
    assert ("riskpipe", "RISK", risk_last) in killed["tracking"]  # the batch in flight left nothing
    resumed = riskpipe("readmodel", "run", "--until-idle", "--no-http", env=env)
    assert resumed.returncode == 0, resumed.stderr
    incremental = await rows(database_url)
    new_last = (await store.stream_state("RISK"))["last_seq"]
    assert new_last > risk_last
    assert ("riskpipe", "RISK", new_last) in incremental["tracking"]
    rebuilt = riskpipe("readmodel", "rebuild", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "generation 2 built" in rebuilt.stdout
    assert await rows(database_url) == incremental


async def test_a_batch_of_assessments_at_once_makes_the_rows_one_at_a_time_does(
    store: EventStore, nats_server: NatsServer, model: ReadModel, database_url: str
) -> None:
    """The RISK source applies a batch in one statement; the rows equal applying each event."""
    await _more_evidence(store, "b", count=60)  # four entities: several of each in every batch
    await run_worker(store, nats_server.url)
    await model.run(asyncio.Event(), until_idle=True)
    batched = (await rows(database_url))["assessments"]
    assert len(batched) == 4
    tables = generation_tables(1)
    async with model.db.write() as conn:
        await conn.execute(delete(tables.assessments))
        async for batch in store.read_batches(stream="RISK"):
            for raw in reversed(batch):  # any order: an older one never replaces a newer one
                await apply_assessment(conn, tables, model.item(raw), projection="risk")
    assert (await rows(database_url))["assessments"] == batched
