"""Tracking records: a batch's rows and its stream position, committed in one transaction.

This is the heart of the read model's exactly-once (see
:mod:`projections.readmodel._projector`): the position of each source stream
lives in the database, in ``rm_tracking_g<N>``, and moves only in the
transaction that writes the rows of the events it covers.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import and_, select, update

from projections.readmodel._apply import upsert
from projections.readmodel._tables import GENERATIONS
from projections.readmodel.errors import ReadModelError, TrackingConflictError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel._apply import Apply, ApplyMany, Item
    from projections.readmodel._database import Database
    from projections.readmodel._metrics import ReadModelMetrics
    from projections.readmodel._tables import GenerationTables

__all__ = ["GenerationChangedError", "Source", "TrackedWriter"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Source:
    """A stream the read model follows, and how its events change the rows."""

    name: str
    """What it holds (``risk``, ``dlq``, ``audit``, ``review``): for people, not for tracking."""
    stream: str
    apply: Apply
    apply_many: ApplyMany | None = None
    """A batch's events at once, where one statement can do what one per event would:
    the outcome of each, counted. ``apply`` is used where it is ``None``."""


class GenerationChangedError(ReadModelError):
    """The generation being written is no longer active (a rebuild switched) or was dropped."""


class TrackedWriter:
    """Writes batches of one read model (``name``) into a generation, with their positions."""

    def __init__(self, db: Database, *, name: str, metrics: ReadModelMetrics | None = None) -> None:
        self.db = db
        self.name = name
        self.metrics = metrics

    async def ensure_tracking(self, tables: GenerationTables, streams: Sequence[str]) -> None:
        """A tracking record at 0 for every source that has none (a source added later too)."""
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            for stream in streams:
                await upsert(
                    conn,
                    tables.tracking,
                    {"readmodel": self.name, "stream": stream, "last_seq": 0,
                     "updated_at": now},
                    ("readmodel", "stream"),
                    (),
                )  # fmt: skip

    async def positions(self, tables: GenerationTables, streams: Sequence[str]) -> dict[str, int]:
        """The last sequence applied of each source stream, as the tracking records say."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(tables.tracking.c.stream, tables.tracking.c.last_seq).where(
                    tables.tracking.c.readmodel == self.name
                )
            )
            found = {str(stream): int(seq) for stream, seq in rows}
        return {stream: found.get(stream, 0) for stream in streams}

    async def apply_batch(
        self,
        tables: GenerationTables,
        source: Source,
        position: int,
        items: Sequence[Item],
        *,
        through: int,
    ) -> int:
        """Apply ``items`` after ``position`` and move the tracking record to ``through``.

        One transaction: the rows and the position are stored together or not
        at all. Items at or below ``position`` are left out (they are applied).
        Returns ``through``.

        Raises:
            TrackingConflictError: the record is not at ``position`` (another
                process moved it); nothing was written.
            DatabaseUnavailableError: the database cannot be reached.
        """
        started = time.perf_counter()
        outcomes: collections.Counter[str] = collections.Counter()
        tracking = tables.tracking
        key = and_(tracking.c.readmodel == self.name, tracking.c.stream == source.stream)
        async with self.db.write() as conn:
            await self._fence(conn, tables.generation)
            query = select(tracking.c.last_seq).where(key)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            found = (await conn.execute(query)).scalar()
            if found != position:
                if self.metrics is not None:
                    self.metrics.conflicts.labels(source.stream).inc()
                raise TrackingConflictError(source.stream, position, found)
            fresh = [entry for entry in items if entry.sequence > position]
            if source.apply_many is not None:
                outcomes.update(await source.apply_many(conn, tables, fresh))
            else:
                for entry in fresh:
                    outcomes[await source.apply(conn, tables, entry)] += 1
            await conn.execute(
                update(tracking).where(key).values(last_seq=through, updated_at=datetime.now(UTC))
            )
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.transaction.observe(elapsed)
            for outcome, count in outcomes.items():
                self.metrics.events.labels(source.stream, outcome).inc(count)
            self.metrics.position.labels(source.stream).set(through)
        _log.debug(
            "readmodel.batch_applied",
            stream=source.stream,
            after=position,
            through=through,
            applied=outcomes["applied"],
            skipped=outcomes["skipped"],
            seconds=round(elapsed, 6),
        )
        return through

    async def _fence(self, conn: AsyncConnection, generation: int) -> None:
        """Refuse to write a generation that is retired or gone (a rebuild switched over)."""
        query = select(GENERATIONS.c.state).where(GENERATIONS.c.generation == generation)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        state = (await conn.execute(query)).scalar()
        if state not in {"active", "building"}:
            raise GenerationChangedError(f"generation {generation} is {state or 'gone'}")
