"""Review cases on SQL from made-up review events, and the tracking record's guarantees.

The rows must say what :func:`projections.review.fold_cases` says of the same
events; a batch and its position commit together or not at all; applying the
same events again changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.readmodel import REVIEW_STREAM, ReviewLog, rows

from projections.readmodel import (
    Database,
    Item,
    ReadModelReader,
    TrackedWriter,
    TrackingConflictError,
    apply_review,
    generation_tables,
    migrate,
)
from projections.readmodel._generations import active_or_first
from projections.readmodel._tracking import Source
from projections.review import fold_cases

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel import Applied, GenerationTables

REVIEW = Source("review", REVIEW_STREAM, apply_review)


def _log() -> ReviewLog:
    """Two entities of t1 and one of t2, every kind of review event, and the fold's edge cases."""
    log = ReviewLog()
    log.opened("t1", "e1", 1, level="critical", triggers=("level", "degraded"))
    log.assigned("t1", "e1", 1, "bob")
    log.opened("t1", "e2", 1, level="medium", triggers=("low_confidence",))
    log.commented("t1", "e1", 1)
    log.decided("t1", "e1", 1, "confirmed", level="critical")
    log.opened("t1", "e1", 3)  # not the next number: the fold ignores it
    log.assigned("t1", "e2", 7, "carol")  # no such case: ignored
    log.reopened("t1", "e1", 1)
    log.foreign("t1", "e1")  # not an event: only the version moves
    log.decided("t1", "e1", 1, "false_positive")
    log.opened("t1", "e1", 2)
    log.opened("t2", "e1", 1, level="low")
    log.assigned("t2", "e1", 1, "dave")
    log.assigned("t2", "e1", 1, None)
    log.decided("t1", "e2", 1, "escalated")
    return log


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[tuple[TrackedWriter, GenerationTables]]:
    """A tracked writer on the active generation of a fresh database."""
    db = Database(database_url)
    await db.check()
    await migrate(db)
    tables = generation_tables((await active_or_first(db)).generation)
    writer = TrackedWriter(db, name="test")
    await writer.ensure_tracking(tables, [REVIEW_STREAM])
    try:
        yield writer, tables
    finally:
        await db.dispose()


async def _apply(
    writer: TrackedWriter,
    tables: GenerationTables,
    items: list[Item],
    *,
    size: int = 3,
    source: Source = REVIEW,
) -> int:
    position = (await writer.positions(tables, [REVIEW_STREAM]))[REVIEW_STREAM]
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        position = await writer.apply_batch(
            tables, source, position, chunk, through=chunk[-1].sequence
        )
    return position


async def test_cases_are_what_the_fold_says(
    writer: tuple[TrackedWriter, GenerationTables], database_url: str
) -> None:
    """Each case row matches the fold of its entity's events, field by field."""
    log = _log()
    await _apply(*writer, log.items)
    reader = ReadModelReader(writer[0].db)
    for tenant, entity in (("t1", "e1"), ("t1", "e2"), ("t2", "e1")):
        events = [
            (i.type, i.data, i.sequence, i.time)
            for i in log.items
            if i.subject == f"rp.review.{tenant}.{entity}" and i.data is not None
        ]
        folded = fold_cases(tenant, entity, events)  # type: ignore[arg-type]
        last = max(i.sequence for i in log.items if i.subject == f"rp.review.{tenant}.{entity}")
        for case in folded.cases:
            row = await reader.get_case(
                tenants=[tenant], tenant=tenant, entity=entity, number=case.number
            )
            assert row is not None
            assert (row.status, row.assignee, row.opened_at) == (
                case.status, case.assignee, case.opened_at
            )  # fmt: skip
            assert row.triggers == case.opened.triggers
            assert (row.level, row.score) == (
                case.opened.assessment.level,
                case.opened.assessment.score,
            )
            decision = case.decision
            assert row.outcome == (decision.outcome if decision else None)
            assert row.decided_level == (decision.level if decision else None)
            assert row.decided_at == case.decided_at
            assert row.version == last  # the subject's last message, the foreign one too
        page = await reader.list_cases(tenants=[tenant])
        assert [c.number for c in page.items if c.entity == entity] == [
            c.number for c in folded.cases
        ]
    e1 = await reader.get_case(tenants=["t1"], tenant="t1", entity="e1", number=1)
    assert e1 is not None
    assert [(d.outcome, d.level, d.by_name) for d in e1.decisions] == [
        ("confirmed", "critical", "alice"),
        ("false_positive", None, "alice"),
    ]
    assert (await rows(database_url))["tracking"] == [("test", REVIEW_STREAM, len(log.items))]


async def test_another_tenant_sees_nothing(writer: tuple[TrackedWriter, GenerationTables]) -> None:
    """Every query is scoped to the caller's tenants: another's case is not found."""
    await _apply(*writer, _log().items)
    reader = ReadModelReader(writer[0].db)
    assert await reader.get_case(tenants=["t2"], tenant="t1", entity="e1", number=1) is None
    assert {c.tenant for c in (await reader.list_cases(tenants=["t2"])).items} == {"t2"}
    assert (await reader.list_cases(tenants=[])).items == ()


async def test_the_same_events_again_change_nothing(
    writer: tuple[TrackedWriter, GenerationTables], database_url: str
) -> None:
    """Re-sent after their commit, a batch's events are left out; applied again, they are no-ops."""
    log = _log()
    done = await _apply(*writer, log.items)
    before = await rows(database_url)
    db_writer, tables = writer
    # the same batch once more, from where the tracking record is: every event is at or below it
    assert await db_writer.apply_batch(tables, REVIEW, done, log.items, through=done) == done
    assert await rows(database_url) == before
    # and each apply function on its own: the second time, the rows stay as they are
    async with db_writer.db.write() as conn:
        for item in log.items:
            await apply_review(conn, tables, item)
    assert await rows(database_url) == before


async def test_a_batch_is_all_or_nothing(
    writer: tuple[TrackedWriter, GenerationTables], database_url: str
) -> None:
    """A batch failing half-way leaves neither rows nor position: tracking never runs ahead."""
    log = _log()
    db_writer, tables = writer
    await _apply(db_writer, tables, log.items[:3])
    before = await rows(database_url)

    async def failing(conn: AsyncConnection, t: GenerationTables, item: Item) -> Applied:
        if item.sequence == 6:
            raise RuntimeError("the database went away half-way")
        return await apply_review(conn, t, item)

    with pytest.raises(RuntimeError, match="half-way"):
        await _apply(
            db_writer,
            tables,
            log.items[3:],
            size=5,
            source=Source("review", REVIEW_STREAM, failing),
        )
    after = await rows(database_url)
    assert after == before
    assert after["tracking"] == [("test", REVIEW_STREAM, 3)]
    # the same events, applied properly from the position, give the complete rows
    await _apply(db_writer, tables, log.items[3:], size=5)
    assert (await rows(database_url))["tracking"] == [("test", REVIEW_STREAM, len(log.items))]


async def test_a_stale_position_is_refused_whole(
    writer: tuple[TrackedWriter, GenerationTables], database_url: str
) -> None:
    """A second writer still at an old position cannot apply its batch: nothing of it is written."""
    log = _log()
    db_writer, tables = writer
    await db_writer.apply_batch(tables, REVIEW, 0, log.items[:4], through=4)
    before = await rows(database_url)
    other = TrackedWriter(db_writer.db, name="test")
    with pytest.raises(TrackingConflictError, match="at 4, not 0"):
        await other.apply_batch(tables, REVIEW, 0, log.items[:6], through=6)
    assert await rows(database_url) == before
