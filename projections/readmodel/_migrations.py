"""Versioned steps for the control tables, each recorded in ``rm_schema_versions``.

Why not alembic: almost everything the read model holds lives in a
generation's tables, which a rebuild creates from scratch under a new suffix
(their layout is :data:`~projections.readmodel._tables.LAYOUT`); they are never
altered in place, as the log can always build them again. What is left to
migrate are two small control tables, which a list of numbered steps in code
covers without a second tool, a script directory, or a history that would
have to know every generation's table names.

A step runs in the same transaction that records it, so a step is applied
once and whole (PostgreSQL and SQLite both roll DDL back). Two processes
starting at once queue: on PostgreSQL behind an advisory lock, on SQLite
behind the write lock that ``BEGIN IMMEDIATE`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import func, select, text

from projections.readmodel._tables import GENERATIONS, SCHEMA_VERSIONS
from projections.readmodel.errors import SchemaTooNewError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel._database import Database

__all__ = ["SCHEMA_VERSION", "STEPS", "Step", "migrate", "schema_version"]

_log = structlog.get_logger(__name__)
_LOCK_KEY = 0x52504D4F44454C  # "RPMODEL": PostgreSQL advisory lock of the migration


@dataclass(frozen=True, slots=True)
class Step:
    """One migration step: its number, what it does, and the work."""

    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


async def _control_tables(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda sync: GENERATIONS.create(sync, checkfirst=True))


STEPS: tuple[Step, ...] = (Step(1, "generations of the read model", _control_tables),)
"""Every step, in order; a new one is appended, never changed once released."""
SCHEMA_VERSION = STEPS[-1].version
"""The control schema version this riskpipe brings the database to."""


async def schema_version(conn: AsyncConnection) -> int:
    """The highest step recorded (0: none, or no table yet)."""
    exists = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, SCHEMA_VERSIONS.name))
    if not exists:
        return 0
    found = (await conn.execute(select(func.max(SCHEMA_VERSIONS.c.version)))).scalar()
    return int(found or 0)


async def migrate(db: Database) -> int:
    """Apply the steps the database lacks; return the schema version it is at.

    Raises:
        SchemaTooNewError: the database was migrated by a newer riskpipe.
        DatabaseUnavailableError: the database cannot be reached.
    """
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        await conn.run_sync(lambda sync: SCHEMA_VERSIONS.create(sync, checkfirst=True))
        found = await schema_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNewError("control schema", found, SCHEMA_VERSION)
        for step in STEPS:
            if step.version <= found:
                continue
            await step.apply(conn)
            await conn.execute(
                SCHEMA_VERSIONS.insert().values(
                    version=step.version, description=step.description, applied_at=_now()
                )
            )
            _log.info("readmodel.migrated", version=step.version, description=step.description)
    return max(found, SCHEMA_VERSION)


def _now() -> datetime:
    return datetime.now(UTC)
