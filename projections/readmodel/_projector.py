"""Projecting the log into SQL exactly once, by tracking positions, without acks.

Each source stream is read in order (``EventStore.read_batches``, an ordered
read with no durable consumer and nothing to acknowledge). A batch of its
messages is applied in ONE database transaction together with the
*tracking record* of that stream: ``(readmodel, stream) -> last sequence
applied``. The idea is the tracking records of event-processing libraries
(a projection's position lives in the same database, written in the same
transaction as its effects): the rows and the position commit together or
not at all, so a crash at any point leaves the position exactly at the last
event whose effects are stored, and a restart resumes at position + 1.
Nothing is ever applied twice, and nothing is skipped.

The transaction first checks that the tracking record still says what this
process read (and, on PostgreSQL, locks it): a second process running the
same read model cannot apply the same batch; its transaction is rolled back
whole (:class:`~projections.readmodel.errors.TrackingConflictError`) and it
reads the position again.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import DBAPIError

from eventstore.errors import DecodeError, NotProvisionedError, TransientStoreError
from projections.readmodel._apply import Item
from projections.readmodel._generations import (
    Generation,
    activate,
    active_or_first,
    check_layout,
    create_generation,
    drop_generation,
    generations,
)
from projections.readmodel._migrations import SCHEMA_VERSION, migrate, schema_version
from projections.readmodel._tables import LAYOUT, generation_tables
from projections.readmodel._tracking import GenerationChangedError, Source, TrackedWriter
from projections.readmodel.errors import (
    DatabaseUnavailableError,
    ReadModelError,
    TrackingConflictError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventstore import EventStore, RawMessage
    from projections.readmodel._database import Database
    from projections.readmodel._metrics import ReadModelMetrics
    from projections.readmodel._tables import GenerationTables

__all__ = [
    "READMODEL",
    "ReadModel",
    "ReadModelStatus",
    "RebuildResult",
    "Source",
    "StreamStatus",
]

_log = structlog.get_logger(__name__)
READMODEL = "riskpipe"
"""The read model's name in its tracking records."""
_RETRY_FIRST = 0.5
_RETRY_MAX = 10.0


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Where the read model is in one source stream."""

    source: str
    stream: str
    position: int
    last_seq: int | None
    """The stream's last sequence (``None``: the stream does not exist yet)."""

    @property
    def lag(self) -> int:
        """Messages stored after the position (0 when the stream does not exist)."""
        return max(0, (self.last_seq or 0) - self.position)


@dataclass(frozen=True, slots=True)
class ReadModelStatus:
    """The database's schema, its generations, and the position in each stream."""

    database: str
    schema_version: int
    known_schema_version: int
    generation: int | None
    layout: int | None
    building: list[int]
    streams: list[StreamStatus]

    @property
    def lag(self) -> int:
        """Messages stored after the positions, over every stream."""
        return sum(s.lag for s in self.streams)


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: the generation it built, and the one it replaced (now dropped)."""

    generation: int
    replaced: int | None
    events: int


class ReadModel:
    """The SQL read model of the log: ``run`` (follow), ``rebuild`` and ``status``.

    ``sources`` are read in their order on each pass; ``batch_size`` bounds
    the messages applied per transaction; ``poll_interval`` is how long a
    caught-up ``run`` waits before it looks for new messages (the lag it adds
    at most).
    """

    def __init__(  # noqa: PLR0913 - where it reads, where it writes, and how
        self,
        db: Database,
        store: EventStore,
        sources: Sequence[Source],
        *,
        name: str = READMODEL,
        metrics: ReadModelMetrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.db = db
        self.store = store
        self.sources = list(sources)
        self.name = name
        self.metrics = metrics
        self.writer = TrackedWriter(db, name=name, metrics=metrics)
        self.caught_up = False
        """Set once a ``run`` pass found nothing new: readiness, for /readyz."""
        self._streams = [s.stream for s in self.sources]
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._missing: set[str] = set()

    # -- set-up ---------------------------------------------------------------

    async def prepare(self) -> GenerationTables:
        """Bring the schema up to date; the active generation (made if there is none).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            SchemaTooNewError: a newer riskpipe set the database up.
            RebuildNeededError: the active generation has an older table layout.
        """
        await self.db.check()
        await migrate(self.db)
        found = await active_or_first(self.db)
        check_layout(found)
        tables = generation_tables(found.generation)
        await self.writer.ensure_tracking(tables, self._streams)
        if self.metrics is not None:
            self.metrics.generation.set(tables.generation)
        return tables

    async def positions(self, tables: GenerationTables) -> dict[str, int]:
        """The last sequence applied of each source stream, as the tracking records say."""
        return await self.writer.positions(tables, self._streams)

    # -- applying -------------------------------------------------------------

    def item(self, raw: RawMessage) -> Item:
        """A stored message as the apply functions take it (undecodable: no type, no data)."""
        try:
            event, data = self.store.decoded(raw)
        except DecodeError:
            return Item(raw.stream, raw.seq, raw.subject)
        return Item(
            raw.stream, raw.seq, raw.subject, event.type, event.tenant, event.subject,
            event.time, data,
        )  # fmt: skip

    async def catch_up(
        self,
        tables: GenerationTables,
        positions: dict[str, int],
        stop: asyncio.Event | None = None,
    ) -> int:
        """One pass: every source from its position to its last sequence as of now.

        ``positions`` is updated as batches commit. Returns how many messages
        the pass read (0: the read model was caught up).
        """
        read = 0
        for source in self.sources:
            if stop is not None and stop.is_set():
                break
            read += await self._catch_up_source(tables, source, positions, stop)
        return read

    async def _catch_up_source(
        self,
        tables: GenerationTables,
        source: Source,
        positions: dict[str, int],
        stop: asyncio.Event | None,
    ) -> int:
        last = await self._last_seq(source)
        position = positions[source.stream]
        self._set_lag(source, last, position)
        if last is None or last <= position:
            return 0
        read = 0
        _log.debug("readmodel.reading", stream=source.stream, after=position, until=last)
        batches = self.store.read_batches(
            stream=source.stream, from_seq=position + 1, until_seq=last
        )
        async with aclosing(batches):
            async for arrived in batches:
                for chunk in _chunks(arrived, self.batch_size):
                    items = [self.item(raw) for raw in chunk]
                    position = await self.writer.apply_batch(
                        tables, source, position, items, through=chunk[-1].seq
                    )
                    positions[source.stream] = position
                    read += len(chunk)
                    self._set_lag(source, last, position)
                if stop is not None and stop.is_set():
                    return read
        if position < last:  # the stream's last messages were deleted: read past them too
            positions[source.stream] = await self.writer.apply_batch(
                tables, source, position, [], through=last
            )
            self._set_lag(source, last, last)
            read += 1
        return read

    async def _last_seq(self, source: Source) -> int | None:
        """The stream's last sequence; ``None`` (logged once) while the stream does not exist."""
        try:
            state = await self.store.stream_state(source.stream)
        except NotProvisionedError:
            if source.stream not in self._missing:
                self._missing.add(source.stream)
                _log.warning("readmodel.stream_missing", stream=source.stream, source=source.name)
            return None
        self._missing.discard(source.stream)
        return int(state["last_seq"])

    def _set_lag(self, source: Source, last: int | None, position: int) -> None:
        if self.metrics is not None:
            self.metrics.lag.labels(source.stream).set(max(0, (last or 0) - position))
            self.metrics.position.labels(source.stream).set(position)

    # -- run, rebuild, status ---------------------------------------------------

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Apply everything after the tracking positions, then follow new messages.

        With ``until_idle``, return once a pass finds nothing new. A rebuild
        that switches generations is followed: the next batch goes to the new
        one, from its own positions. Following, a database or NATS outage is
        waited out (logged, with backoff); ``until_idle`` raises it instead.

        Raises:
            ReadModelError: the schema or layout is unusable; with ``until_idle``,
                the database could not be reached either.
            EventStoreError: with ``until_idle``, NATS failed.
        """
        tables = await self.prepare()
        positions = await self.positions(tables)
        _log.info("readmodel.started", generation=tables.generation, positions=positions)
        wait = _RETRY_FIRST
        behind = True
        while not stop.is_set():
            try:
                read = await self.catch_up(tables, positions, stop)
            except GenerationChangedError as exc:
                _log.info("readmodel.generation_changed", reason=str(exc))
                tables = await self.prepare()
                positions = await self.positions(tables)
                continue
            except TrackingConflictError as exc:
                _log.warning("readmodel.tracking_conflict", error=str(exc))
                positions = await self.positions(tables)
                continue
            except (DatabaseUnavailableError, DBAPIError, TransientStoreError) as exc:
                if until_idle:
                    raise
                _log.warning("readmodel.retrying", error=_one_line(exc), retry_in=wait)
                await _sleep(stop, wait)
                wait = min(2 * wait, _RETRY_MAX)
                positions = await self._positions_when_up(tables, positions)
                continue
            wait = _RETRY_FIRST
            if read == 0:
                if until_idle:
                    _log.info("readmodel.idle", generation=tables.generation, positions=positions)
                    return
                self.caught_up = True
                if behind:  # once each time it catches up, not on every poll
                    _log.info(
                        "readmodel.caught_up", generation=tables.generation, positions=positions
                    )
                await _sleep(stop, self.poll_interval)
            behind = read > 0
        _log.info("readmodel.stopped", generation=tables.generation, positions=positions)

    async def _positions_when_up(
        self, tables: GenerationTables, known: dict[str, int]
    ) -> dict[str, int]:
        """The positions as stored (a batch whose commit was cut off may have landed)."""
        try:
            return await self.positions(tables)
        except (DatabaseUnavailableError, DBAPIError):
            return known

    async def rebuild(self, stop: asyncio.Event | None = None) -> RebuildResult | None:
        """Build a new generation from the start of the log, switch readers to it, drop the old.

        Readers keep the active generation until the new one has caught up
        with every stream; the switch is one transaction; the old generation's
        tables are dropped after it. Leftovers of a rebuild that died are
        dropped first (run one rebuild at a time). ``None`` when ``stop`` was
        set first: the new generation is dropped, nothing was switched.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            SchemaTooNewError: a newer riskpipe set the database up.
        """
        await self.db.check()
        await migrate(self.db)
        async with self.db.read() as conn:
            existing = await generations(conn)
        for old in existing:
            if old.state == "active" and old.layout > LAYOUT:
                check_layout(old)
            if old.state != "active":
                _log.warning("readmodel.leftover_dropped", generation=old.generation)
                await drop_generation(self.db, old.generation)
        tables = await create_generation(self.db, active=False)
        await self.writer.ensure_tracking(tables, self._streams)
        positions = dict.fromkeys((s.stream for s in self.sources), 0)
        events = 0
        try:
            while True:
                read = await self.catch_up(tables, positions, stop)
                events += read
                if stop is not None and stop.is_set():
                    _log.info("readmodel.rebuild_abandoned", generation=tables.generation)
                    await drop_generation(self.db, tables.generation)
                    return None
                if read == 0:
                    break
            replaced = await activate(self.db, tables.generation)
        except BaseException:
            with contextlib.suppress(ReadModelError, DBAPIError, LookupError):
                await asyncio.shield(drop_generation(self.db, tables.generation))
            raise
        if replaced is not None:
            await drop_generation(self.db, replaced)
        if self.metrics is not None:
            self.metrics.generation.set(tables.generation)
        _log.info(
            "readmodel.rebuilt",
            generation=tables.generation,
            replaced=replaced,
            events=events,
            positions=positions,
        )
        return RebuildResult(tables.generation, replaced, events)

    async def status(self) -> ReadModelStatus:
        """The schema version, the generations, and each stream's position and lag.

        Reads only: it neither migrates nor creates anything (not even the
        file of a SQLite database that does not exist yet).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
        """
        found: Generation | None = None
        building: list[int] = []
        positions: dict[str, int] = {}
        version = 0
        if not self.db.missing():
            await self.db.check()
            async with self.db.read() as conn:
                version = await schema_version(conn)
                if version >= 1:
                    all_generations = await generations(conn)
                    found = next((g for g in all_generations if g.state == "active"), None)
                    building = [g.generation for g in all_generations if g.state == "building"]
        if found is not None and found.layout == LAYOUT:
            positions = await self.positions(generation_tables(found.generation))
        streams = [
            StreamStatus(s.name, s.stream, positions.get(s.stream, 0), await self._last_seq(s))
            for s in self.sources
        ]
        return ReadModelStatus(
            database=self.db.shown,
            schema_version=version,
            known_schema_version=SCHEMA_VERSION,
            generation=None if found is None else found.generation,
            layout=None if found is None else found.layout,
            building=building,
            streams=streams,
        )


def _chunks(items: list[RawMessage], size: int) -> Iterator[list[RawMessage]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]
