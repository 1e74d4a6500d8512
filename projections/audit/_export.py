"""Evidence joined with what it caused, as flat rows for auditors' own tools (JSONL or CSV).

One row per evidence event: the evidence, its outcome, and the assessment it
caused (the assessment's ``causationid`` is the evidence id and its data names
the evidence's stream sequence, which is the join key) or its dead letter.
Both formats read back into the same rows: CSV cells hold lists and objects as
compact JSON, and an empty cell means "none".
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from analyzers import EvidenceDataV2
from projections import REPLAY_HEADER
from projections.audit._records import (
    AssessmentJoin,
    DeadLetterRef,
    RecordedAssessment,
    ack_floor,
    closing,
    dead_letters,
    entity_key,
    outcome_of,
)
from projections.audit._scope import ReplayScope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventstore import EventStore, RecordedEvent

__all__ = [
    "ExportFormat",
    "ExportRow",
    "ExportWriter",
    "export_file",
    "export_rows",
    "read_export",
]

ExportFormat = Literal["jsonl", "csv"]
_STRUCTURED = frozenset(
    {"attributes", "confidence_factors", "contributions", "patterns", "recommendations",
     "enrichment"}
)  # fmt: skip


class ExportRow(BaseModel):
    """One evidence event, its outcome, and the assessment or dead letter it caused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    tenant: str
    entity: str
    evidence_sequence: int
    evidence_stored_at: datetime
    evidence_id: str | None = None
    evidence_source: str | None = None
    evidence_time: datetime | None = None
    correlation_id: str | None = None
    pattern: str | None = None
    severity: str | None = None
    evidence_confidence: float | None = None
    observed_at: datetime | None = None
    attributes: dict[str, JsonValue] | None = None
    description: str | None = None
    evidence_error: str | None = None
    replay_of: int | None = None
    outcome: Literal["assessed", "dead_lettered", "pending", "missing"]
    assessment_sequence: int | None = None
    assessment_id: str | None = None
    causation_id: str | None = None
    assessed_at: datetime | None = None
    level: str | None = None
    previous_level: str | None = None
    score: float | None = None
    confidence: float | None = None
    confidence_factors: dict[str, float] | None = None
    patterns: list[str] | None = None
    contributions: dict[str, float] | None = None
    recommendations: list[str] | None = None
    enrichment: dict[str, JsonValue] | None = None
    degraded: bool | None = None
    as_of: datetime | None = None
    analyzer_version: str | None = None
    config_fingerprint: str | None = None
    dead_letter_sequence: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    dead_lettered_at: datetime | None = None
    evidence_confidence_used: float | None = None
    """The confidence the analyzer used: the reported one, else the default (1.0).

    ``evidence_confidence`` is what the producer reported, ``None`` when it
    reported none. Last, so that the CSV columns of earlier exports keep their places.
    """
    evidence_type: str | None = None
    """The evidence's type as stored (``riskpipe.evidence.recorded.v1`` or ``.v2``); the
    other evidence columns are the evidence read as v2, as the analyzer read it."""
    impact: float | None = None
    """The impact the producer reported (v2 evidence only; ``None``: none)."""


async def export_rows(
    store: EventStore, tenant: str, *, entity: str | None = None, projection: str = "risk"
) -> AsyncIterator[ExportRow]:
    """The rows of ``tenant`` (or one ``entity``), in evidence stream order.

    Raises:
        InvalidScopeError: ``tenant`` or ``entity`` is not a token.
    """
    scope = ReplayScope(tenant, entity)
    config = store.config
    floor = await ack_floor(store, projection)
    risk_last = int((await store.stream_state(config.stream_for("risk")))["last_seq"])
    last = int((await store.stream_state(config.stream_for("evidence")))["last_seq"])
    letters = await dead_letters(store, projection, scope)
    risk = store.read_batches(
        stream=config.stream_for("risk"),
        until_seq=risk_last,
        filter_subject=scope.subject_filter(config, "risk"),
    )
    evidence = store.read_all(
        until_seq=last, filter_subject=scope.subject_filter(config, "evidence")
    )
    async with closing(risk) as risk_records, closing(evidence) as records:
        join = AssessmentJoin(store, risk_records, from_seq=1, until_seq=last, keep_beyond=False)
        async for rec in records:
            key = entity_key(rec.subject)
            letter = letters.get(rec.sequence)
            found = join.resolve(await join.take(rec.sequence, key, wait=letter is None))
            yield _row(store, rec, found[0] if found else None, letter, floor)


def _row(
    store: EventStore,
    rec: RecordedEvent,
    assessment: RecordedAssessment | None,
    letter: DeadLetterRef | None,
    floor: int,
) -> ExportRow:
    tenant, entity = entity_key(rec.subject)
    replay_of = rec.headers.get(REPLAY_HEADER)
    fields: dict[str, Any] = {
        "tenant": tenant,
        "entity": entity,
        "evidence_sequence": rec.sequence,
        "evidence_stored_at": rec.stored_at,
        "replay_of": int(replay_of) if replay_of and replay_of.isdigit() else None,
        "outcome": outcome_of(
            rec.sequence, assessed=assessment is not None, dead_lettered=letter is not None,
            ack_floor=floor,
        ),
        **_evidence_fields(store, rec),
        **(_assessment_fields(assessment) if assessment else {}),
        **(_letter_fields(letter) if letter else {}),
    }  # fmt: skip
    return ExportRow.model_validate(fields)


def _evidence_fields(store: EventStore, rec: RecordedEvent) -> dict[str, Any]:
    event = rec.event
    if event is None:
        return {"evidence_error": str(rec.error)}
    data = store.schemas.upcast(event, store.schemas.typed_data(event))[1]
    envelope = {
        "evidence_id": event.id,
        "evidence_source": event.source,
        "evidence_time": event.time,
        "correlation_id": event.correlationid,
    }
    if not isinstance(data, EvidenceDataV2):
        return {**envelope, "evidence_error": f"not evidence: {event.type}"}
    return {
        **envelope,
        "evidence_type": event.type,
        "impact": data.impact,
        "pattern": data.pattern,
        "severity": data.severity.value,
        # Reported and default confidence are kept apart: a producer's 1.0 is a claim,
        # the default is the absence of one.
        "evidence_confidence": data.confidence if "confidence" in data.model_fields_set else None,
        "evidence_confidence_used": data.confidence,
        "observed_at": data.observed_at,
        "attributes": data.attributes,
        "description": data.description,
    }


def _assessment_fields(recorded: RecordedAssessment) -> dict[str, Any]:
    a = recorded.data.assessment
    return {
        "assessment_sequence": recorded.sequence,
        "assessment_id": recorded.event.id,
        "causation_id": recorded.event.causationid,
        "assessed_at": recorded.event.time,
        "level": a.level.value,
        "previous_level": a.previous_level.value,
        "score": a.score,
        "confidence": a.confidence,
        "confidence_factors": a.confidence_factors,
        "patterns": list(a.patterns),
        "contributions": a.contributions,
        "recommendations": list(a.recommendations),
        "enrichment": a.enrichment.model_dump(mode="json") if a.enrichment else None,
        "degraded": a.degraded,
        "as_of": a.as_of,
        "analyzer_version": a.analyzer_version,
        "config_fingerprint": a.config_fingerprint,
    }


def _letter_fields(letter: DeadLetterRef) -> dict[str, Any]:
    return {
        "dead_letter_sequence": letter.dlq_sequence,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "dead_lettered_at": letter.dead_lettered_at,
    }


# -- files -----------------------------------------------------------------------------------


class ExportWriter:
    """Writes rows to an open text file as JSON lines or CSV (with a header row)."""

    def __init__(self, out: IO[str], fmt: ExportFormat) -> None:
        self.fmt = fmt
        self.count = 0
        self._out = out
        self._csv: csv.DictWriter[str] | None = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=list(ExportRow.model_fields))
            self._csv.writeheader()

    def write(self, row: ExportRow) -> None:
        """Write one row."""
        if self._csv is None:
            self._out.write(row.model_dump_json() + "\n")
        else:
            self._csv.writerow({name: _cell(name, value) for name, value in row})
        self.count += 1


async def export_file(  # noqa: PLR0913 - where to, what, and whose
    store: EventStore,
    path: Path,
    fmt: ExportFormat,
    tenant: str,
    *,
    entity: str | None = None,
    projection: str = "risk",
) -> int:
    """Write the rows of :func:`export_rows` to ``path``; return how many were written.

    Raises:
        InvalidScopeError: ``tenant`` or ``entity`` is not a token.
        OSError: the file cannot be written.
    """
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = ExportWriter(out, fmt)
        async for row in export_rows(store, tenant, entity=entity, projection=projection):
            writer.write(row)
    return writer.count


def read_export(path: Path, fmt: ExportFormat) -> list[ExportRow]:
    """Read a file :class:`ExportWriter` wrote back into rows.

    Raises:
        pydantic.ValidationError: a line or row is not an export row.
    """
    with path.open(encoding="utf-8", newline="") as src:
        if fmt == "jsonl":
            return [ExportRow.model_validate_json(line) for line in src if line.strip()]
        return [
            ExportRow.model_validate({name: _value(name, cell) for name, cell in row.items()})
            for row in csv.DictReader(src)
        ]


def _cell(name: str, value: object) -> str:
    if value is None:
        return ""
    if name in _STRUCTURED:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _value(name: str, cell: str) -> object:
    if cell == "":
        return None
    return json.loads(cell) if name in _STRUCTURED else cell
