"""Reading the read model: what the HTTP API serves, always scoped to the caller's tenants.

Every function takes ``tenants``, the tenants the caller may see, and never
returns a row of another: a case of another tenant is "not found", exactly
like one that does not exist. An empty ``tenants`` sees nothing.

Each call reads the active generation in one transaction. Should a rebuild
switch generations between resolving it and reading (and drop the old
tables), the call is retried once on the new generation.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.exc import DBAPIError

from projections.readmodel._generations import active_generation, check_layout
from projections.readmodel._tables import generation_tables
from projections.readmodel.errors import NoGenerationError, ReadModelError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Sequence

    from sqlalchemy import ColumnElement, Row
    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel._database import Database
    from projections.readmodel._tables import GenerationTables

__all__ = [
    "MAX_LIMIT",
    "AssessmentView",
    "CasePage",
    "CaseStatus",
    "CaseView",
    "DeadLetterPage",
    "DeadLetterView",
    "DecisionView",
    "InvalidCursorError",
    "ReadModelReader",
]

MAX_LIMIT = 500
"""The most rows one page holds."""
_T = TypeVar("_T")
CaseStatus = Literal["open", "escalated", "decided"]
"""What a case is now: waiting for a decision (open or escalated), or decided."""
DeadLetterState = Literal["queued", "replayed", "purged"]


class InvalidCursorError(ReadModelError, ValueError):
    """A page cursor that this read model did not hand out (or that was altered)."""


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AssessmentView(_View):
    """An entity's latest assessment."""

    tenant: str
    entity: str
    level: str
    score: float
    confidence: float
    degraded: bool
    analyzer_version: str
    evidence_stream: str
    evidence_seq: int
    risk_seq: int
    assessed_at: datetime


class DecisionView(_View):
    """A decision on a case (a reopened case may have several)."""

    review_seq: int
    case: int
    outcome: str
    level: str | None
    reason: str
    by_name: str
    by_role: str
    decided_at: datetime


class CaseView(_View):
    """A case as the case list shows it (``decisions``: filled by ``get_case`` only)."""

    tenant: str
    entity: str
    number: int
    status: CaseStatus
    assignee: str | None
    opened_at: datetime
    triggers: tuple[str, ...]
    level: str
    """The level of the assessment the case was opened on."""
    score: float
    confidence: float
    outcome: str | None
    decided_level: str | None
    decided_at: datetime | None
    version: int
    """The sequence of the entity's last review message: the fence its next event names."""
    decisions: tuple[DecisionView, ...] = ()


class CasePage(_View):
    """One page of cases, oldest first; ``next_cursor`` fetches the next (``None``: last page)."""

    items: tuple[CaseView, ...]
    next_cursor: str | None


class DeadLetterView(_View):
    """A dead letter and what operators did with it.

    ``error_type``, ``error_message`` and ``dead_lettered_at`` are ``None`` once
    it is purged: the purge deleted the dead letter from DLQ, and the read model
    keeps only what the log still says (the purge record).
    """

    dlq_seq: int
    projection: str
    tenant: str
    entity: str
    stream: str | None
    sequence: int | None
    evidence_id: str | None
    error_type: str | None
    error_message: str | None
    dead_lettered_at: datetime | None
    state: DeadLetterState
    replayed_as: int | None
    state_changed_at: datetime | None


class DeadLetterPage(_View):
    """One page of dead letters by DLQ sequence; ``next_cursor``: the next page (``None``: last)."""

    items: tuple[DeadLetterView, ...]
    next_cursor: str | None


def _encode_cursor(values: Sequence[object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidCursorError("not a page cursor of this list") from None
    if not isinstance(values, list) or len(values) != size:
        raise InvalidCursorError("not a page cursor of this list")
    return values


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    return limit


def _one_or_many(value: str | Collection[str] | None) -> list[str] | None:
    """A filter's values as a list (``None``: no filter)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True, slots=True)
class _CaseFilter:
    """The filters of a case list, as a ``WHERE`` on a generation's cases table."""

    tenants: list[str] | None
    statuses: list[str] | None
    levels: list[str] | None
    assignee: str | None
    unassigned: bool
    cutoff: datetime | None

    def where(self, t: GenerationTables) -> list[ColumnElement[bool]]:
        c = t.cases
        where: list[ColumnElement[bool]] = []
        if self.tenants is not None:
            where.append(c.c.tenant.in_(self.tenants))
        if self.statuses is not None:
            where.append(c.c.status.in_(self.statuses))
        if self.levels is not None:
            where.append(c.c.level.in_(self.levels))
        if self.assignee is not None:
            where.append(c.c.assignee == self.assignee)
        if self.unassigned:
            where.append(c.c.assignee.is_(None))
        if self.cutoff is not None:
            where.append(c.c.opened_at < self.cutoff)
        return where


class ReadModelReader:
    """Queries on the active generation of the read model in ``db``."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self._clock = clock or (lambda: datetime.now(UTC))

    async def _read(
        self, query: Callable[[AsyncConnection, GenerationTables], Awaitable[_T]]
    ) -> _T:
        """``query`` on the active generation, in one read transaction; retried once after a switch.

        Raises:
            NoGenerationError: nothing was built yet.
            RebuildNeededError: the active generation has an older layout.
            SchemaTooNewError: it has a newer one.
            DatabaseUnavailableError: the database cannot be reached.
        """
        error: DBAPIError | None = None
        for _ in range(2):
            async with self.db.read() as conn:
                found = await active_generation(conn)
                if found is None:
                    raise NoGenerationError
                check_layout(found)
                try:
                    return await query(conn, generation_tables(found.generation))
                except DBAPIError as exc:
                    error = exc
            async with self.db.read() as conn:
                now = await active_generation(conn)
            if now is None or now.generation == found.generation:
                break  # not a switch: the error is the answer
        assert error is not None  # noqa: S101 - the loop ends early only after an error
        raise error

    async def list_cases(  # noqa: PLR0913 - the filters of a case list, keyword-only
        self,
        *,
        tenants: Collection[str] | None,
        status: CaseStatus | Collection[CaseStatus] | None = None,
        level: str | Collection[str] | None = None,
        assignee: str | None = None,
        unassigned: bool = False,
        older_than: datetime | timedelta | None = None,
        cursor: str | None = None,
        after: tuple[datetime, str, str, int] | None = None,
        limit: int = 50,
    ) -> CasePage:
        """Cases of ``tenants`` (``None``: of every tenant), oldest first, ``limit`` at a time.

        ``after`` is a position in the order below, for a caller that keeps
        positions its own way instead of ``cursor``.

        ``status``: the status (or statuses) it has now; ``level``: the level (or
        levels) the case was opened at; ``assignee``: one
        reviewer's cases, ``unassigned``: nobody's; ``older_than``: opened before
        that time, or longer ago than that duration. Pages are keyset pages in
        (opened_at, tenant, entity, number) order: a case opened meanwhile never
        shifts a page.

        Raises:
            ValueError: ``limit`` outside 1..500.
            InvalidCursorError: ``cursor`` is not one this list handed out.
            NoGenerationError: nothing was built yet.
            DatabaseUnavailableError: the database cannot be reached.
        """
        size = _limit(limit)
        position = after if cursor is None else _cursor_key(_decode_cursor(cursor, 4))
        cutoff = self._clock() - older_than if isinstance(older_than, timedelta) else older_than
        tenant_list = None if tenants is None else sorted(set(tenants))
        if tenant_list == []:
            return CasePage(items=(), next_cursor=None)
        filters = _CaseFilter(
            tenant_list, _one_or_many(status), _one_or_many(level), assignee, unassigned, cutoff
        )

        async def query(conn: AsyncConnection, t: GenerationTables) -> CasePage:
            c = t.cases
            where = filters.where(t)
            order = (c.c.opened_at, c.c.tenant, c.c.entity, c.c.number)
            if position is not None:
                where.append(tuple_(*order) > tuple_(*position))
            rows = (
                await conn.execute(select(c).where(*where).order_by(*order).limit(size + 1))
            ).all()
            items = tuple(_case(row) for row in rows[:size])
            last = items[-1] if len(rows) > size else None
            next_cursor = (
                None
                if last is None
                else _encode_cursor(
                    [last.opened_at.isoformat(), last.tenant, last.entity, last.number]
                )
            )
            return CasePage(items=items, next_cursor=next_cursor)

        return await self._read(query)

    async def count_cases(
        self,
        *,
        tenants: Collection[str] | None,
        status: CaseStatus | Collection[CaseStatus] | None = None,
        assignee: str | None = None,
        unassigned: bool = False,
        older_than: datetime | timedelta | None = None,
    ) -> dict[str, int]:
        """How many cases :meth:`list_cases` lists with these filters, by the level opened at.

        Levels without a case are left out.

        Raises:
            NoGenerationError: nothing was built yet.
            DatabaseUnavailableError: the database cannot be reached.
        """
        cutoff = self._clock() - older_than if isinstance(older_than, timedelta) else older_than
        tenant_list = None if tenants is None else sorted(set(tenants))
        if tenant_list == []:
            return {}
        filters = _CaseFilter(tenant_list, _one_or_many(status), None, assignee, unassigned, cutoff)

        async def query(conn: AsyncConnection, t: GenerationTables) -> dict[str, int]:
            c = t.cases
            counted = select(c.c.level, func.count()).where(*filters.where(t)).group_by(c.c.level)
            return {str(level): int(n) for level, n in (await conn.execute(counted)).all()}

        return await self._read(query)

    async def get_case(
        self, *, tenants: Collection[str], tenant: str, entity: str, number: int
    ) -> CaseView | None:
        """One case with its decisions, oldest first; ``None`` if absent or of another tenant.

        Raises:
            NoGenerationError: nothing was built yet.
            DatabaseUnavailableError: the database cannot be reached.
        """
        if tenant not in set(tenants):
            return None

        async def query(conn: AsyncConnection, t: GenerationTables) -> CaseView | None:
            c, d = t.cases, t.decisions
            row = (
                await conn.execute(
                    select(c).where(
                        c.c.tenant == tenant, c.c.entity == entity, c.c.number == number
                    )
                )
            ).first()
            if row is None:
                return None
            decisions = (
                await conn.execute(
                    select(d)
                    .where(d.c.tenant == tenant, d.c.entity == entity, d.c.case_number == number)
                    .order_by(d.c.review_seq)
                )
            ).all()
            return _case(row).model_copy(
                update={"decisions": tuple(_decision(r) for r in decisions)}
            )

        return await self._read(query)

    async def latest_assessment(
        self, *, tenants: Collection[str], tenant: str, entity: str
    ) -> AssessmentView | None:
        """The entity's latest assessment; ``None`` if it has none or is of another tenant.

        Raises:
            NoGenerationError: nothing was built yet.
            DatabaseUnavailableError: the database cannot be reached.
        """
        if tenant not in set(tenants):
            return None

        async def query(conn: AsyncConnection, t: GenerationTables) -> AssessmentView | None:
            a = t.assessments
            row = (
                await conn.execute(select(a).where(a.c.tenant == tenant, a.c.entity == entity))
            ).first()
            return None if row is None else AssessmentView.model_validate(dict(row._mapping))  # noqa: SLF001

        return await self._read(query)

    async def dead_letters(  # noqa: PLR0913 - the filters of a list, keyword-only
        self,
        *,
        tenants: Collection[str],
        state: DeadLetterState | None = None,
        projection: str | None = None,
        entity: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> DeadLetterPage:
        """Dead letters of ``tenants`` in DLQ order, ``limit`` at a time.

        Raises:
            ValueError: ``limit`` outside 1..500.
            InvalidCursorError: ``cursor`` is not one this list handed out.
            NoGenerationError: nothing was built yet.
            DatabaseUnavailableError: the database cannot be reached.
        """
        size = _limit(limit)
        after = None if cursor is None else _decode_cursor(cursor, 1)
        if after is not None and not isinstance(after[0], int):
            raise InvalidCursorError("not a page cursor of this list")
        tenant_list = sorted(set(tenants))
        if not tenant_list:
            return DeadLetterPage(items=(), next_cursor=None)

        async def query(conn: AsyncConnection, t: GenerationTables) -> DeadLetterPage:
            dl = t.dead_letters
            where: list[ColumnElement[bool]] = [dl.c.tenant.in_(tenant_list)]
            if state is not None:
                where.append(dl.c.state == state)
            if projection is not None:
                where.append(dl.c.projection == projection)
            if entity is not None:
                where.append(dl.c.entity == entity)
            if after is not None:
                where.append(dl.c.dlq_seq > after[0])
            rows = (
                await conn.execute(
                    select(dl).where(and_(*where)).order_by(dl.c.dlq_seq).limit(size + 1)
                )
            ).all()
            items = tuple(_dead_letter(row) for row in rows[:size])
            more = len(rows) > size
            return DeadLetterPage(
                items=items, next_cursor=_encode_cursor([items[-1].dlq_seq]) if more else None
            )

        return await self._read(query)


def _cursor_key(values: list[Any]) -> tuple[datetime, str, str, int]:
    opened, tenant, entity, number = values
    try:
        when = datetime.fromisoformat(str(opened))
    except ValueError:
        raise InvalidCursorError("not a page cursor of this list") from None
    if (
        when.tzinfo is None
        or not isinstance(tenant, str)
        or not isinstance(entity, str)
        or not isinstance(number, int)
    ):
        raise InvalidCursorError("not a page cursor of this list")
    return when, tenant, entity, number


def _case(row: Row[Any]) -> CaseView:
    m = dict(row._mapping)  # noqa: SLF001 - SQLAlchemy's API
    m["triggers"] = tuple(t for t in str(m["triggers"]).split(",") if t)
    return CaseView.model_validate(m)


def _decision(row: Row[Any]) -> DecisionView:
    m = dict(row._mapping)  # noqa: SLF001
    m["case"] = m.pop("case_number")
    for key in ("tenant", "entity"):
        m.pop(key)
    return DecisionView.model_validate(m)


def _dead_letter(row: Row[Any]) -> DeadLetterView:
    m = dict(row._mapping)  # noqa: SLF001
    m.pop("state_seq")
    return DeadLetterView.model_validate(m)
