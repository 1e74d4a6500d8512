"""The SQL read model: the log projected into tables the HTTP API queries.

Latest assessments, dead letters and their state, review cases and their
decisions, kept in SQLite or PostgreSQL exactly once by tracking records
written in the same transaction as the rows (see docs/readmodel.md).
"""

from projections.readmodel._apply import (
    Applied,
    Apply,
    ApplyMany,
    Item,
    apply_assessment,
    apply_audit,
    apply_dead_letter,
    apply_review,
    assessments_of,
    latest_assessments_of,
)
from projections.readmodel._database import Database, normalise_url, shown_url
from projections.readmodel._generations import Generation, create_generation
from projections.readmodel._metrics import ReadModelMetrics
from projections.readmodel._migrations import SCHEMA_VERSION, migrate
from projections.readmodel._projector import (
    READMODEL,
    ReadModel,
    ReadModelStatus,
    RebuildResult,
    Source,
    StreamStatus,
)
from projections.readmodel._queries import (
    MAX_LIMIT,
    AssessmentView,
    CasePage,
    CaseStatus,
    CaseView,
    DeadLetterPage,
    DeadLetterView,
    DecisionView,
    InvalidCursorError,
    ReadModelReader,
)
from projections.readmodel._tables import LAYOUT, GenerationTables, generation_tables
from projections.readmodel._tracking import TrackedWriter
from projections.readmodel.errors import (
    DatabaseUnavailableError,
    DatabaseUrlError,
    NoGenerationError,
    ReadModelError,
    RebuildNeededError,
    SchemaTooNewError,
    TrackingConflictError,
)

__all__ = [
    "LAYOUT",
    "MAX_LIMIT",
    "READMODEL",
    "SCHEMA_VERSION",
    "Applied",
    "Apply",
    "ApplyMany",
    "AssessmentView",
    "CasePage",
    "CaseStatus",
    "CaseView",
    "Database",
    "DatabaseUnavailableError",
    "DatabaseUrlError",
    "DeadLetterPage",
    "DeadLetterView",
    "DecisionView",
    "Generation",
    "GenerationTables",
    "InvalidCursorError",
    "Item",
    "NoGenerationError",
    "ReadModel",
    "ReadModelError",
    "ReadModelMetrics",
    "ReadModelReader",
    "ReadModelStatus",
    "RebuildNeededError",
    "RebuildResult",
    "SchemaTooNewError",
    "Source",
    "StreamStatus",
    "TrackedWriter",
    "TrackingConflictError",
    "apply_assessment",
    "apply_audit",
    "apply_dead_letter",
    "apply_review",
    "assessments_of",
    "create_generation",
    "generation_tables",
    "latest_assessments_of",
    "migrate",
    "normalise_url",
    "shown_url",
]
