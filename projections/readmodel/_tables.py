"""The read model's tables: two control tables, and one set of tables per generation.

A *generation* is one complete build of the read model from the log. Its
tables carry its number as a suffix (``rm_cases_g3``), so a rebuild fills a
fresh set beside the one readers use, and switching is one update of
``rm_generations``. The control tables are unsuffixed and few: they change
only through the versioned steps of :mod:`projections.readmodel._migrations`;
a generation's tables change by building a new generation (their layout is
:data:`LAYOUT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

__all__ = [
    "CONTROL",
    "GENERATIONS",
    "LAYOUT",
    "SCHEMA_VERSIONS",
    "GenerationTables",
    "UtcDateTime",
    "generation_tables",
]

LAYOUT = 1
"""The layout of a generation's tables that this riskpipe writes and reads."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC and read back as UTC, on SQLite as on PostgreSQL.

    SQLite keeps no time zone: a naive value read back is UTC by construction.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; naive values are refused, a time without a zone is ambiguous."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a read model time must carry a time zone")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - the API's signature
    ) -> datetime | None:
        """UTC, aware."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


CONTROL = MetaData()
SCHEMA_VERSIONS = Table(
    "rm_schema_versions",
    CONTROL,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)
"""One row per migration step applied: the highest is the control schema's version."""
GENERATIONS = Table(
    "rm_generations",
    CONTROL,
    Column("generation", Integer, primary_key=True, autoincrement=False),
    Column("layout", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # building | active
    Column("created_at", UtcDateTime, nullable=False),
    Column("activated_at", UtcDateTime),
)
"""Every generation that exists; exactly one is ``active`` once anything was built."""


@dataclass(frozen=True, slots=True)
class GenerationTables:
    """The tables of one generation."""

    generation: int
    metadata: MetaData
    tracking: Table
    assessments: Table
    dead_letters: Table
    cases: Table
    decisions: Table


def generation_tables(generation: int) -> GenerationTables:
    """The tables of ``generation`` (nothing is created: see ``metadata.create_all``)."""
    md = MetaData()
    g = f"_g{generation}"
    tracking = Table(
        f"rm_tracking{g}",
        md,
        Column("readmodel", String(64), primary_key=True),
        Column("stream", String(64), primary_key=True),
        Column("last_seq", BigInteger, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    )
    assessments = Table(
        f"rm_assessments{g}",
        md,
        Column("tenant", String(128), primary_key=True),
        Column("entity", String(128), primary_key=True),
        Column("level", String(16), nullable=False),
        Column("score", Float, nullable=False),
        Column("confidence", Float, nullable=False),
        Column("degraded", Boolean, nullable=False),
        Column("analyzer_version", String(64), nullable=False),
        Column("evidence_stream", String(64), nullable=False),
        Column("evidence_seq", BigInteger, nullable=False),
        Column("risk_seq", BigInteger, nullable=False),
        Column("assessed_at", UtcDateTime, nullable=False),
        Index(f"ix_rm_assessments{g}_level", "tenant", "level"),
    )
    dead_letters = Table(
        f"rm_dead_letters{g}",
        md,
        Column("dlq_seq", BigInteger, primary_key=True, autoincrement=False),
        Column("projection", String(128), nullable=False),
        Column("tenant", String(128), nullable=False),
        Column("entity", String(128), nullable=False),
        # what only the dead letter says is NULL once it is purged: the purge deleted
        # it from DLQ, and a rebuild finds only the purge record
        Column("stream", String(64)),
        Column("sequence", BigInteger),
        Column("evidence_id", Text),
        Column("error_type", Text),
        Column("error_message", Text),
        Column("dead_lettered_at", UtcDateTime),
        Column("state", String(16), nullable=False),  # queued | replayed | purged
        Column("state_seq", BigInteger),
        Column("replayed_as", BigInteger),
        Column("state_changed_at", UtcDateTime),
        Index(f"ix_rm_dead_letters{g}_tenant", "tenant", "state", "dlq_seq"),
    )
    cases = Table(
        f"rm_cases{g}",
        md,
        Column("tenant", String(128), primary_key=True),
        Column("entity", String(128), primary_key=True),
        Column("number", Integer, primary_key=True, autoincrement=False),
        Column("status", String(16), nullable=False),  # open | escalated | decided
        Column("assignee", String(128)),
        Column("opened_at", UtcDateTime, nullable=False),
        Column("triggers", Text, nullable=False),  # comma-separated
        Column("level", String(16), nullable=False),
        Column("score", Float, nullable=False),
        Column("confidence", Float, nullable=False),
        Column("outcome", String(32)),
        Column("decided_level", String(16)),
        Column("decided_at", UtcDateTime),
        Column("version", BigInteger, nullable=False),
        # a case list filters on tenant and status, then level or assignee, and pages
        # in (opened_at, entity, number) order: each index ends in that key
        Index(f"ix_rm_cases{g}_status", "tenant", "status", "opened_at", "entity", "number"),
        Index(
            f"ix_rm_cases{g}_level", "tenant", "status", "level", "opened_at", "entity", "number"
        ),
        Index(
            f"ix_rm_cases{g}_assignee",
            "tenant",
            "status",
            "assignee",
            "opened_at",
            "entity",
            "number",
        ),
        Index(f"ix_rm_cases{g}_opened", "opened_at", "tenant", "entity", "number"),
    )
    decisions = Table(
        f"rm_decisions{g}",
        md,
        Column("review_seq", BigInteger, primary_key=True, autoincrement=False),
        Column("tenant", String(128), nullable=False),
        Column("entity", String(128), nullable=False),
        Column("case_number", Integer, nullable=False),
        Column("outcome", String(32), nullable=False),
        Column("level", String(16)),
        Column("reason", Text, nullable=False),
        Column("by_name", String(128), nullable=False),
        Column("by_role", String(16), nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Index(f"ix_rm_decisions{g}_case", "tenant", "entity", "case_number", "review_seq"),
    )
    return GenerationTables(generation, md, tracking, assessments, dead_letters, cases, decisions)
