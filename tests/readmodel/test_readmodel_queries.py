"""The case list the HTTP API serves: its filters, its keyset pages, its tenant scope."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from support.events import BASE_TIME
from support.readmodel import REVIEW_STREAM, ReviewLog

from projections.readmodel import (
    Database,
    InvalidCursorError,
    NoGenerationError,
    ReadModelReader,
    TrackedWriter,
    apply_review,
    generation_tables,
    migrate,
)
from projections.readmodel._generations import active_or_first
from projections.readmodel._tracking import Source

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from projections.readmodel import CaseView

_LEVELS = ("low", "medium", "high", "critical")


@pytest.fixture
async def reader(database_url: str) -> AsyncIterator[ReadModelReader]:
    """30 cases over 3 tenants, some assigned, some decided; the reader's clock at minute 60."""
    db = Database(database_url)
    await db.check()
    await migrate(db)
    tables = generation_tables((await active_or_first(db)).generation)
    log = ReviewLog()
    for n in range(30):
        tenant, entity = f"t{n % 3}", f"e{n}"
        log.opened(tenant, entity, 1, level=_LEVELS[n % 4])
        if n % 5 == 0:
            log.assigned(tenant, entity, 1, "bob")
        if n % 7 == 0:
            log.decided(tenant, entity, 1)
    writer = TrackedWriter(db, name="test")
    await writer.ensure_tracking(tables, [REVIEW_STREAM])
    source = Source("review", REVIEW_STREAM, apply_review)
    await writer.apply_batch(tables, source, 0, log.items, through=len(log.items))
    try:
        yield ReadModelReader(db, clock=lambda: BASE_TIME + timedelta(minutes=60))
    finally:
        await db.dispose()


async def _all(reader: ReadModelReader, limit: int, **filters: object) -> list[CaseView]:
    found: list[CaseView] = []
    cursor = None
    while True:
        page = await reader.list_cases(cursor=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        assert len(page.items) <= limit
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def test_pages_hold_every_case_once_oldest_first(reader: ReadModelReader) -> None:
    """Walking the pages gives each case of the tenants once, in (opened_at, key) order."""
    everything = await _all(reader, 7, tenants=["t0", "t1", "t2"])
    assert len(everything) == 30
    keys = [(c.opened_at, c.tenant, c.entity, c.number) for c in everything]
    assert keys == sorted(keys)
    assert len(set(keys)) == 30
    assert [c.entity for c in await _all(reader, 500, tenants=["t1"])] == [
        f"e{n}" for n in range(30) if n % 3 == 1
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "decided"}, {n for n in range(30) if n % 7 == 0}),
        ({"status": "open"}, {n for n in range(30) if n % 7}),
        ({"level": "critical"}, {n for n in range(30) if n % 4 == 3}),
        ({"level": ["low", "medium"]}, {n for n in range(30) if n % 4 < 2}),
        ({"assignee": "bob"}, {n for n in range(30) if n % 5 == 0}),
        ({"unassigned": True, "status": "open"}, {n for n in range(30) if n % 5 and n % 7}),
        ({"assignee": "nobody-at-all"}, set()),
    ],
)
async def test_filters(
    reader: ReadModelReader, filters: dict[str, object], expected: set[int]
) -> None:
    """Status, level, assignee and unassigned narrow the list, page by page."""
    found = await _all(reader, 4, tenants=["t0", "t1", "t2"], **filters)
    assert {int(c.entity[1:]) for c in found} == expected


async def test_several_statuses_and_the_counts_by_level(reader: ReadModelReader) -> None:
    """A list of statuses is any of them; the counts are of every matching case, by level."""
    waiting = await _all(reader, 4, tenants=["t0", "t1", "t2"], status=["open", "escalated"])
    assert {int(c.entity[1:]) for c in waiting} == {n for n in range(30) if n % 7}
    counts = await reader.count_cases(tenants=["t0", "t1", "t2"], status=["open", "escalated"])
    assert counts == {
        level: sum(1 for n in range(30) if n % 7 and _LEVELS[n % 4] == level) for level in _LEVELS
    }
    assert await reader.count_cases(tenants=["t1"], assignee="bob") == {
        _LEVELS[n % 4]: 1 for n in range(30) if n % 3 == 1 and n % 5 == 0
    }
    assert await reader.count_cases(tenants=[]) == {}
    assert await reader.count_cases(tenants=["t0"], assignee="nobody-at-all") == {}


async def test_older_than_is_a_time_or_an_age(reader: ReadModelReader) -> None:
    """``older_than`` takes a time (opened before it) or a duration (opened longer ago)."""
    opened = {c.entity: c.opened_at for c in await _all(reader, 500, tenants=["t0", "t1", "t2"])}
    cutoff = sorted(opened.values())[10]
    by_time = await _all(reader, 500, tenants=["t0", "t1", "t2"], older_than=cutoff)
    assert {c.entity for c in by_time} == {e for e, t in opened.items() if t < cutoff}
    # the clock stands at minute 60: an age of 60 - m minutes means opened before minute m
    age = BASE_TIME + timedelta(minutes=60) - cutoff
    by_age = await _all(reader, 500, tenants=["t0", "t1", "t2"], older_than=age)
    assert by_age == by_time


async def test_bad_cursors_and_limits_are_refused(reader: ReadModelReader) -> None:
    """A cursor not handed out by the list, or a limit outside 1..500, is an error, not a guess."""
    for cursor in ("garbage!", "WzFd", ""):
        with pytest.raises(InvalidCursorError):
            await reader.list_cases(tenants=["t0"], cursor=cursor or "e30=")
    for limit in (0, 501):
        with pytest.raises(ValueError, match="limit must be 1 to 500"):
            await reader.list_cases(tenants=["t0"], limit=limit)


async def test_nothing_built_yet_says_so(tmp_path: object) -> None:
    """A reader on a database where no generation exists raises NoGenerationError."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        await migrate(db)
        with pytest.raises(NoGenerationError, match="has not been built yet"):
            await ReadModelReader(db).list_cases(tenants=["t0"])
    finally:
        await db.dispose()
