"""Audit tools over the event log: replay and verify, explain an entity, export.

Everything here only reads. :func:`replay` re-derives every assessment from
the evidence with the analyzer and compares it with the recorded one, field
by field and as canonical JSON; with another config it is a what-if that
counts how levels would have changed. :func:`explain` lays out an entity's
timeline up to a point, and :func:`export_rows` joins evidence with the
assessment or dead letter it caused, for offline analysis.
"""

from projections.audit._diff import ABSENT, FieldDifference, first_difference
from projections.audit._explain import Explanation, TimelineEntry, explain
from projections.audit._export import (
    ExportFormat,
    ExportRow,
    ExportWriter,
    export_file,
    export_rows,
    read_export,
)
from projections.audit._parallel import auto_jobs
from projections.audit._records import DeadLetterRef, DlqAction, EvidenceOutcome, RecordedAssessment
from projections.audit._replay import replay
from projections.audit._report import (
    Counts,
    EntityLevelChange,
    EntityReplay,
    Finding,
    FindingKind,
    LevelChanges,
    ReplayMode,
    ReplayReport,
)
from projections.audit._scope import ReplayScope, first_stored_after
from projections.audit.errors import AuditError, InvalidScopeError, ReplayPartError

__all__ = [
    "ABSENT",
    "AuditError",
    "Counts",
    "DeadLetterRef",
    "DlqAction",
    "EntityLevelChange",
    "EntityReplay",
    "EvidenceOutcome",
    "Explanation",
    "ExportFormat",
    "ExportRow",
    "ExportWriter",
    "FieldDifference",
    "Finding",
    "FindingKind",
    "InvalidScopeError",
    "LevelChanges",
    "RecordedAssessment",
    "ReplayMode",
    "ReplayPartError",
    "ReplayReport",
    "ReplayScope",
    "TimelineEntry",
    "auto_jobs",
    "explain",
    "export_file",
    "export_rows",
    "first_difference",
    "first_stored_after",
    "read_export",
    "replay",
]
