"""Re-deriving one assessment as the risk projection made it, and comparing it with the record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers import (
    AnalyzerError,
    Evidence,
    EvidenceData,
    assess,
    conservative_assessment,
)
from eventstore.errors import DecodeError
from projections.audit._diff import FieldDifference, first_difference
from projections.errors import UnexpectedEventTypeError
from projections.risk import EvidenceRef, evidence_event, evidence_ref

if TYPE_CHECKING:
    from analyzers import AnalyzerConfig, Assessment, EntityRiskState
    from eventstore import EventSchemas, RecordedEvent
    from projections.risk import RiskAssessedData

__all__ = ["UNASSESSABLE", "compare", "derive", "evidence_of"]

UNASSESSABLE = (DecodeError, AnalyzerError, UnexpectedEventTypeError, ValueError)
"""What stored evidence that the projection would have dead-lettered raises here."""


def evidence_of(schemas: EventSchemas, rec: RecordedEvent) -> tuple[Evidence, EvidenceRef]:
    """The evidence as the projection scored it, and the reference its assessment holds.

    Raises:
        DecodeError: the stored message is not a valid event.
        UnexpectedEventTypeError: it is not evidence.
        InvalidEvidenceError: the analyzer refuses it.
    """
    event = evidence_event(rec)
    data = schemas.typed_data(event)
    assert isinstance(data, EvidenceData)  # noqa: S101 - the registry maps the type to it
    evidence = Evidence.from_data(
        data, event_id=event.id, source=event.source, sequence=rec.sequence, event_time=event.time
    )
    ref = evidence_ref(event, rec.stream, rec.sequence, rec.headers)
    return evidence, ref


def derive(
    config: AnalyzerConfig, state: EntityRiskState, evidence: Evidence, recorded: Assessment
) -> tuple[Assessment, EntityRiskState]:
    """Score as the projection did: conservatively when degraded, with the recorded signal.

    Raises:
        AnalyzerError: the analyzer refuses (e.g. the evidence is already in the state).
    """
    if recorded.degraded:
        return conservative_assessment(state, evidence, config=config)
    return assess(state, evidence, config=config, enrichment=recorded.enrichment)


def compare(
    data: RiskAssessedData,
    expected: tuple[str, EvidenceRef, Assessment, EntityRiskState],
) -> FieldDifference | None:
    """The first field where the record differs from ``(projection, ref, assessment, state)``.

    Byte-identical means the fields are equal *and* the canonical JSON of the
    two assessments is the same text; ``None`` then.
    """
    projection, ref, assessment, state = expected
    same = (
        data.projection == projection
        and data.evidence == ref
        and data.assessment == assessment
        and data.state == state
    )
    recorded_json = data.assessment.canonical_json()
    if same and recorded_json == assessment.canonical_json():
        return None
    found = first_difference(
        _comparable(data.projection, data.evidence, data.assessment, data.state),
        _comparable(*expected),
    )
    return found or FieldDifference(
        "assessment (canonical JSON)", recorded_json, assessment.canonical_json()
    )


def _comparable(
    projection: str, ref: EvidenceRef, assessment: Assessment, state: EntityRiskState
) -> dict[str, object]:
    return {
        "projection": projection,
        "evidence": ref.model_dump(mode="json"),
        "assessment": assessment.model_dump(mode="json"),
        "state": state.model_dump(mode="json"),
    }
