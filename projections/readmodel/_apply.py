"""How each event changes the read model's rows: one function per source stream.

Every function here is idempotent on its own (applying an event twice leaves
the rows as applying it once), and the order of DLQ and AUDIT events between
each other does not matter: a dead letter and the operator's action on it
meet in one row, whichever is read first. Exactly-once comes from the
tracking position (see :mod:`projections.readmodel._projector`); this is the
second line of defence, and what makes a rebuild equal to the incremental run.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from projections._deadletter import DEAD_LETTERED, DeadLetterData
from projections._dlq import DLQ_PURGED, DLQ_REPLAYED, DlqActionData
from projections.review._events import (
    ASSIGNED,
    DECIDED,
    OPENED,
    REOPENED,
    REVIEW_TYPES,
    CaseAssignedData,
    CaseDecidedData,
    CaseOpenedData,
    CaseReopenedData,
)
from projections.risk._events import ASSESSED, RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from pydantic import BaseModel
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection

    from projections.readmodel._tables import GenerationTables

__all__ = [
    "Applied",
    "Apply",
    "Item",
    "apply_assessment",
    "apply_audit",
    "apply_dead_letter",
    "apply_review",
    "assessments_of",
    "review_subject",
    "upsert",
]

Applied = Literal["applied", "skipped"]
"""What an event did: changed rows, or was not one the read model keeps (foreign, other type)."""
_ADDRESSED = 4  # <prefix>.<category>.<tenant>.<entity>
_LETTER_ONLY = ("error_type", "error_message", "dead_lettered_at")
"""What a dead letter says that its audit records do not."""


@dataclass(frozen=True, slots=True)
class Item:
    """One stored message as the read model sees it: where it is, and what it holds.

    ``type`` and ``data`` are ``None`` for a message that is not a valid event.
    """

    stream: str
    sequence: int
    subject: str
    type: str | None = None
    tenant: str | None = None
    entity: str | None = None
    time: datetime | None = None
    data: BaseModel | None = None


class Apply(Protocol):
    """How a source's events change the rows: one call per event, inside the batch's transaction."""

    async def __call__(
        self, conn: AsyncConnection, tables: GenerationTables, item: Item, /
    ) -> Applied: ...


class ApplyMany(Protocol):
    """How a batch of a source's events changes the rows, at once: each one's outcome, counted."""

    async def __call__(
        self, conn: AsyncConnection, tables: GenerationTables, items: Sequence[Item], /
    ) -> collections.Counter[Applied]: ...


async def upsert(  # noqa: PLR0913 - the table, the row, its key, what a conflict changes, when
    conn: AsyncConnection,
    table: Table,
    values: dict[str, Any],
    keys: Sequence[str],
    changes: Sequence[str],
    *,
    where: Any = None,  # noqa: ANN401 - a SQL expression over the table and ``excluded``
) -> None:
    """Insert ``values``; on a conflict on ``keys``, set ``changes`` from them (if ``where``)."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(**values)
    if changes:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: stmt.excluded[name] for name in changes},
            where=where(table, stmt.excluded) if where is not None else None,
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    await conn.execute(stmt)


_ASSESSMENT_KEY = ("tenant", "entity")


def latest_assessments_of(projection: str) -> ApplyMany:
    """The RISK source's batch apply: one statement for the batch's latest per entity.

    The same rows as :func:`assessments_of` one event at a time (a test pins
    it): within a batch only each entity's highest RISK sequence can win, and
    the statement keeps the guard that a row never goes back to an older one.
    """

    async def apply_many(
        conn: AsyncConnection, tables: GenerationTables, items: Sequence[Item]
    ) -> collections.Counter[Applied]:
        outcomes: collections.Counter[Applied] = collections.Counter()
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for item in items:
            values = _assessment_row(item, projection)
            if values is None:
                outcomes["skipped"] += 1
                continue
            outcomes["applied"] += 1
            key = (values["tenant"], values["entity"])
            if (known := latest.get(key)) is None or known["risk_seq"] < values["risk_seq"]:
                latest[key] = values
        if latest:
            table = tables.assessments
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(_ASSESSMENT_KEY),
                set_={n: stmt.excluded[n] for n in _ASSESSMENT_COLUMNS if n not in _ASSESSMENT_KEY},
                where=table.c.risk_seq < stmt.excluded.risk_seq,
            )
            await conn.execute(stmt, list(latest.values()))
        return outcomes

    return apply_many


def assessments_of(projection: str) -> Apply:
    """The RISK source's apply function for the assessments of ``projection``."""

    async def apply(conn: AsyncConnection, tables: GenerationTables, item: Item) -> Applied:
        return await apply_assessment(conn, tables, item, projection=projection)

    return apply


async def apply_assessment(
    conn: AsyncConnection, tables: GenerationTables, item: Item, *, projection: str
) -> Applied:
    """RISK: the latest assessment of each entity (by RISK sequence) replaces the one before."""
    values = _assessment_row(item, projection)
    if values is None:
        return "skipped"
    await upsert(
        conn,
        tables.assessments,
        values,
        _ASSESSMENT_KEY,
        [k for k in values if k not in _ASSESSMENT_KEY],
        where=lambda t, new: t.c.risk_seq < new.risk_seq,
    )
    return "applied"


_ASSESSMENT_COLUMNS = (
    "tenant", "entity", "level", "score", "confidence", "degraded", "analyzer_version",
    "evidence_stream", "evidence_seq", "risk_seq", "assessed_at",
)  # fmt: skip


def _assessment_row(item: Item, projection: str) -> dict[str, Any] | None:
    """The latest-assessment row an assessment of ``projection`` makes (``None``: not one)."""
    data = item.data
    if (
        item.type != ASSESSED
        or not isinstance(data, RiskAssessedData)
        or data.projection != projection
        or item.tenant is None
        or item.entity is None
        or item.time is None
    ):
        return None
    a = data.assessment
    return {
        "tenant": item.tenant,
        "entity": item.entity,
        "level": str(a.level),
        "score": a.score,
        "confidence": a.confidence,
        "degraded": a.degraded,
        "analyzer_version": a.analyzer_version,
        "evidence_stream": data.evidence.stream,
        "evidence_seq": data.evidence.sequence,
        "risk_seq": item.sequence,
        "assessed_at": item.time,
    }


async def apply_dead_letter(conn: AsyncConnection, tables: GenerationTables, item: Item) -> Applied:
    """DLQ: a dead letter, queued unless an operator's action on it was read first."""
    data = item.data
    if item.type != DEAD_LETTERED or not isinstance(data, DeadLetterData):
        return "skipped"
    if item.tenant is None or item.entity is None:
        return "skipped"
    letter = {
        "projection": data.projection,
        "tenant": item.tenant,
        "entity": item.entity,
        "stream": data.stream,
        "sequence": data.sequence,
        "evidence_id": data.evidence_id,
        "error_type": data.error_type,
        "error_message": data.error_message,
        "dead_lettered_at": data.dead_lettered_at,
    }
    await upsert(
        conn,
        tables.dead_letters,
        {"dlq_seq": item.sequence, **letter, "state": "queued"},
        ("dlq_seq",),
        list(letter),  # the state stays what the audit stream said
        where=lambda t, _new: t.c.state != "purged",  # a purged letter's content is gone
    )
    return "applied"


async def apply_audit(conn: AsyncConnection, tables: GenerationTables, item: Item) -> Applied:
    """AUDIT: a replay or a purge moves its dead letter's state (claims change nothing).

    A purge deletes the dead letter from DLQ: its row keeps what the purge
    record says (where the evidence was, which it was) and loses the error,
    exactly as a rebuild, which no longer finds the dead letter, would build it.
    """
    data = item.data
    if item.type not in {DLQ_REPLAYED, DLQ_PURGED} or not isinstance(data, DlqActionData):
        return "skipped"
    if item.tenant is None or item.entity is None:
        return "skipped"
    replayed = item.type == DLQ_REPLAYED
    change: dict[str, Any] = {"state": "replayed" if replayed else "purged"}
    change |= {"state_seq": item.sequence, "state_changed_at": item.time}
    if replayed:  # a purge after a replay keeps what the letter was replayed as
        change["replayed_as"] = data.replayed_as
    else:  # the purge deleted the dead letter from the log: what only it said goes too,
        # so that the rows stay a function of the log (a rebuild never reads it again)
        change |= dict.fromkeys(_LETTER_ONLY)
    row = {
        "dlq_seq": data.dead_letter_sequence,
        "projection": data.projection,
        "tenant": item.tenant,
        "entity": item.entity,
        "stream": data.stream,
        "sequence": data.sequence,
        "evidence_id": data.evidence_id,
        **change,
    }
    await upsert(
        conn,
        tables.dead_letters,
        row,
        ("dlq_seq",),
        list(change),
        where=lambda t, new: (t.c.state_seq.is_(None)) | (t.c.state_seq < new.state_seq),
    )
    return "applied"


def review_subject(subject: str) -> tuple[str, str] | None:
    """``(tenant, entity)`` of ``<prefix>.review.<tenant>.<entity>``; ``None`` for another shape."""
    parts = subject.split(".")
    if len(parts) != _ADDRESSED or parts[1] != "review" or not parts[2] or not parts[3]:
        return None
    return parts[2], parts[3]


async def apply_review(conn: AsyncConnection, tables: GenerationTables, item: Item) -> Applied:
    """REVIEW: an entity's cases, as :func:`projections.review.fold_cases` leaves them.

    The same rules as the fold: a case opens only as the entity's next number,
    an event of an unknown case changes nothing, and every case of the entity
    carries the subject's last sequence as its version (the fence its next
    event must name), whatever message that was. An event at or below that
    version was applied already and is skipped: applied again at any later
    time, it changes nothing.
    """
    where = review_subject(item.subject)
    if where is None:
        return "skipped"
    tenant, entity = where
    cases = tables.cases
    key = and_(cases.c.tenant == tenant, cases.c.entity == entity)
    last_case, version = (
        await conn.execute(select(func.max(cases.c.number), func.max(cases.c.version)).where(key))
    ).one()
    if version is not None and version >= item.sequence:
        return "skipped"  # applied already: the entity's cases are past it
    applied = await _case_event(conn, tables, item, (tenant, entity), int(last_case or 0))
    await conn.execute(update(cases).where(key).values(version=item.sequence))
    return "applied" if applied else "skipped"


async def _case_event(
    conn: AsyncConnection,
    tables: GenerationTables,
    item: Item,
    entity: tuple[str, str],
    last_case: int,
) -> bool:
    """Apply one review event to its case; whether it was one the fold applies."""
    data, cases = item.data, tables.cases
    model = REVIEW_TYPES.get(item.type or "")
    if item.time is None or model is None or not isinstance(data, model):
        return False
    tenant, name = entity
    if item.type == OPENED and isinstance(data, CaseOpenedData):
        if data.case != last_case + 1:
            return False
        ref = data.assessment
        values = {
            "tenant": tenant,
            "entity": name,
            "number": data.case,
            "status": "open",
            "assignee": None,
            "opened_at": item.time,
            "triggers": ",".join(data.triggers),
            "level": str(ref.level),
            "score": ref.score,
            "confidence": ref.confidence,
            "version": item.sequence,
        }
        await upsert(conn, cases, values, ("tenant", "entity", "number"), ())
        return True
    number = getattr(data, "case", None)
    if not isinstance(number, int) or not 1 <= number <= last_case:
        return False  # an event of a case the entity does not have
    key = and_(cases.c.tenant == tenant, cases.c.entity == name, cases.c.number == number)
    if item.type == ASSIGNED and isinstance(data, CaseAssignedData):
        await conn.execute(update(cases).where(key).values(assignee=data.assignee))
    elif item.type == DECIDED and isinstance(data, CaseDecidedData):
        await _decided(conn, tables, item, entity, data)
    elif item.type == REOPENED and isinstance(data, CaseReopenedData):
        await conn.execute(
            update(cases)
            .where(key)
            .values(status="open", outcome=None, decided_level=None, decided_at=None)
        )
    return True  # a comment is on the case's timeline, which the read model does not keep


async def _decided(
    conn: AsyncConnection,
    tables: GenerationTables,
    item: Item,
    entity: tuple[str, str],
    data: CaseDecidedData,
) -> None:
    cases = tables.cases
    key = and_(
        cases.c.tenant == entity[0], cases.c.entity == entity[1], cases.c.number == data.case
    )
    level = str(data.level) if data.level is not None else None
    # an escalation leaves the case open, with the decision that escalated it
    status = "escalated" if data.outcome == "escalated" else "decided"
    await conn.execute(
        update(cases)
        .where(key)
        .values(status=status, outcome=data.outcome, decided_level=level, decided_at=item.time)
    )
    await upsert(
        conn,
        tables.decisions,
        {
            "review_seq": item.sequence,
            "tenant": entity[0],
            "entity": entity[1],
            "case_number": data.case,
            "outcome": data.outcome,
            "level": level,
            "reason": data.reason,
            "by_name": data.by.name,
            "by_role": data.by.role,
            "decided_at": item.time,
        },
        ("review_seq",),
        (),
    )
