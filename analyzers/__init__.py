"""Pure, deterministic, explainable risk scoring."""

from analyzers._evidence import EVIDENCE_RECORDED, EvidenceData, Severity

__all__ = ["EVIDENCE_RECORDED", "EvidenceData", "Severity"]
