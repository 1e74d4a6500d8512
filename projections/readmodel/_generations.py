"""Generations: create one, find the active one, switch readers over, drop the old one.

``rm_generations`` holds one row per generation that exists: ``building``
while a rebuild fills it, ``active`` for the one readers and ``run`` use.
Switching is a single transaction that marks the old row ``retired`` and the
new one ``active``: a reader sees one or the other, never a mix. A retired
generation's tables are dropped right after, and its row with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import delete, func, select, text, update

from projections.readmodel._tables import GENERATIONS, LAYOUT, generation_tables
from projections.readmodel.errors import RebuildNeededError, SchemaTooNewError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel._database import Database
    from projections.readmodel._tables import GenerationTables

__all__ = [
    "Generation",
    "activate",
    "active_generation",
    "active_or_first",
    "check_layout",
    "create_generation",
    "drop_generation",
    "generations",
    "lock_generations",
]

_log = structlog.get_logger(__name__)
_LOCK_KEY = 0x525047454E  # "RPGEN": PostgreSQL advisory lock of generation changes


@dataclass(frozen=True, slots=True)
class Generation:
    """A row of ``rm_generations``."""

    generation: int
    layout: int
    state: str
    created_at: datetime
    activated_at: datetime | None


async def lock_generations(conn: AsyncConnection) -> None:
    """Queue behind any other change of generations (SQLite: the write lock does it)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


async def generations(conn: AsyncConnection) -> list[Generation]:
    """Every generation, oldest first."""
    rows = await conn.execute(select(GENERATIONS).order_by(GENERATIONS.c.generation))
    return [Generation(**row._mapping) for row in rows]  # noqa: SLF001 - SQLAlchemy's API


async def active_generation(conn: AsyncConnection, *, lock: bool = False) -> Generation | None:
    """The active generation, if any; with ``lock``, held against a switch until commit.

    The lock (PostgreSQL's ``FOR SHARE``) keeps a writer's batch from landing in a
    generation that a rebuild retires meanwhile; on SQLite the writer's
    ``BEGIN IMMEDIATE`` does.
    """
    query = select(GENERATIONS).where(GENERATIONS.c.state == "active")
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = (await conn.execute(query)).first()
    return None if row is None else Generation(**row._mapping)  # noqa: SLF001


def check_layout(generation: Generation) -> None:
    """Refuse a generation whose tables this riskpipe does not write.

    Raises:
        RebuildNeededError: an older layout.
        SchemaTooNewError: a newer one.
    """
    if generation.layout < LAYOUT:
        raise RebuildNeededError(generation.generation, generation.layout, LAYOUT)
    if generation.layout > LAYOUT:
        raise SchemaTooNewError(
            f"generation {generation.generation}'s table layout", generation.layout, LAYOUT
        )


async def active_or_first(db: Database) -> Generation:
    """The active generation; generation 1, empty and active, when nothing was built yet.

    One transaction under the generations lock: two processes starting on an
    empty database make one generation, not two.

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    async with db.write() as conn:
        await lock_generations(conn)
        found = await active_generation(conn)
        if found is not None:
            return found
        number = await _allocate(conn, active=True)
    _log.info("readmodel.generation_created", generation=number, active=True)
    return Generation(number, LAYOUT, "active", datetime.now(UTC), datetime.now(UTC))


async def _allocate(conn: AsyncConnection, *, active: bool) -> int:
    """The next generation's number, its tables created and its row inserted."""
    last = (await conn.execute(select(func.max(GENERATIONS.c.generation)))).scalar()
    number = int(last or 0) + 1
    await conn.run_sync(generation_tables(number).metadata.create_all)
    now = datetime.now(UTC)
    await conn.execute(
        GENERATIONS.insert().values(
            generation=number,
            layout=LAYOUT,
            state="active" if active else "building",
            created_at=now,
            activated_at=now if active else None,
        )
    )
    return number


async def create_generation(db: Database, *, active: bool) -> GenerationTables:
    """A new generation with empty tables: ``active`` at once when there is none, else building.

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    async with db.write() as conn:
        await lock_generations(conn)
        number = await _allocate(conn, active=active)
    _log.info("readmodel.generation_created", generation=number, active=active)
    return generation_tables(number)


async def activate(db: Database, new: int) -> int | None:
    """Make ``new`` the active generation; return the one it replaced (now retired).

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
        LookupError: ``new`` is no longer a generation being built.
    """
    async with db.write() as conn:
        await lock_generations(conn)
        state = (
            await conn.execute(select(GENERATIONS.c.state).where(GENERATIONS.c.generation == new))
        ).scalar()
        if state != "building":
            raise LookupError(f"generation {new} is not being built (it is {state or 'gone'})")
        old = await active_generation(conn, lock=True)
        if old is not None:
            await conn.execute(
                update(GENERATIONS)
                .where(GENERATIONS.c.generation == old.generation)
                .values(state="retired")
            )
        await conn.execute(
            update(GENERATIONS)
            .where(GENERATIONS.c.generation == new)
            .values(state="active", activated_at=datetime.now(UTC))
        )
    replaced = None if old is None else old.generation
    _log.info("readmodel.switched", generation=new, replaced=replaced)
    return replaced


async def drop_generation(db: Database, number: int) -> None:
    """Drop a generation's tables and its row (never the active one).

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
        LookupError: ``number`` is the active generation.
    """
    async with db.write() as conn:
        await lock_generations(conn)
        state = (
            await conn.execute(
                select(GENERATIONS.c.state).where(GENERATIONS.c.generation == number)
            )
        ).scalar()
        if state == "active":
            raise LookupError(f"generation {number} is the active one: it is not dropped")
        await conn.run_sync(generation_tables(number).metadata.drop_all, checkfirst=True)
        await conn.execute(delete(GENERATIONS).where(GENERATIONS.c.generation == number))
    _log.info("readmodel.generation_dropped", generation=number)
