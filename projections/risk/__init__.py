"""The risk projection and the events it writes."""

from projections.risk._events import (
    ASSESSED,
    EVIDENCE_STREAM,
    LIVE_OUTPUT,
    RISK_STREAM,
    AssessmentOutput,
    EvidenceRef,
    RiskAssessedData,
    assessment_event,
    build_schemas,
    evidence_event,
    evidence_ref,
    latest_evidence,
)
from projections.risk._identity import verify_evidence_identity
from projections.risk._metrics import RiskMetrics
from projections.risk._projection import RiskProjection

__all__ = [
    "ASSESSED",
    "EVIDENCE_STREAM",
    "LIVE_OUTPUT",
    "RISK_STREAM",
    "AssessmentOutput",
    "EvidenceRef",
    "RiskAssessedData",
    "RiskMetrics",
    "RiskProjection",
    "assessment_event",
    "build_schemas",
    "evidence_event",
    "evidence_ref",
    "latest_evidence",
    "verify_evidence_identity",
]
