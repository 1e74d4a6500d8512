"""The risk projection and the events it writes."""

from projections.risk._events import (
    ASSESSED,
    DLQ_PURGED,
    DLQ_REPLAYED,
    DlqActionData,
    EvidenceRef,
    RiskAssessedData,
    build_schemas,
)
from projections.risk._projection import REPLAY_HEADER, RiskProjection

__all__ = [
    "ASSESSED",
    "DLQ_PURGED",
    "DLQ_REPLAYED",
    "REPLAY_HEADER",
    "DlqActionData",
    "EvidenceRef",
    "RiskAssessedData",
    "RiskProjection",
    "build_schemas",
]
