"""The seed's agent tool, kept as a compatibility facade over the analyzer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analyzers._config import AnalyzerConfig
from analyzers._levels import RiskLevel
from analyzers._log import parse_evidence_log
from analyzers._scoring import assess_many
from analyzers._state import EntityRiskState
from analyzers._version import ANALYZER_VERSION
from analyzers.errors import InvalidEvidenceError

if TYPE_CHECKING:
    from analyzers._assessment import Assessment

__all__ = [
    "FALLBACK_LEVEL",
    "FALLBACK_SCORE",
    "analysis_report",
    "analyze_evidence_log",
    "analyze_risk_patterns",
    "fallback_report",
]

FALLBACK_SCORE = 0.5
FALLBACK_LEVEL = RiskLevel.MEDIUM
_FALLBACK_ADVICE = "The evidence log could not be analysed: fix it and analyse again."
_DEFAULT_CONFIG = AnalyzerConfig()


async def analyze_risk_patterns(
    evidence_log: str, *, config: AnalyzerConfig | None = None
) -> dict[str, Any]:
    """Score an offline evidence log for one entity; never raises on bad input.

    ``evidence_log`` is a JSON array of evidence objects, ``{"evidence": [...]}``
    or JSON lines. The result has ``status`` ``ANALYSIS`` with the final
    assessment, or ``ANALYSIS_ERROR`` with ``error_type``, ``error`` and the
    conservative fallback (score 0.5, level medium, confidence 0.0).
    """
    return analyze_evidence_log(evidence_log, config=config)


def analyze_evidence_log(
    evidence_log: str, *, config: AnalyzerConfig | None = None
) -> dict[str, Any]:
    """The synchronous body of :func:`analyze_risk_patterns`."""
    if not isinstance(evidence_log, str):
        kind = type(evidence_log).__name__
        return fallback_report(f"evidence_log must be a JSON string, got {kind}")
    try:
        evidence = parse_evidence_log(evidence_log)
    except InvalidEvidenceError as exc:
        return fallback_report(str(exc))
    initial = EntityRiskState.initial()
    assessments, _ = assess_many(initial, evidence, config=config or _DEFAULT_CONFIG)
    return analysis_report(assessments[-1])


def analysis_report(assessment: Assessment) -> dict[str, Any]:
    """The facade's view of an assessment (``status`` ``ANALYSIS``)."""
    return {
        "status": "ANALYSIS",
        "risk_score": assessment.score,
        "risk_level": assessment.level.value,
        "patterns_analyzed": list(assessment.patterns),
        "confidence": assessment.confidence,
        "contributions": dict(assessment.contributions),
        "recommendations": list(assessment.recommendations),
        "retries": 0,
        "analyzer_version": assessment.analyzer_version,
    }


def fallback_report(error: str) -> dict[str, Any]:
    """The conservative answer to input that cannot be analysed (``ANALYSIS_ERROR``)."""
    return {
        "status": "ANALYSIS_ERROR",
        "error_type": "validation_error",
        "error": error,
        "risk_score": FALLBACK_SCORE,
        "risk_level": FALLBACK_LEVEL.value,
        "patterns_analyzed": [],
        "confidence": 0.0,
        "contributions": {"fallback": FALLBACK_SCORE},
        "recommendations": [_FALLBACK_ADVICE],
        "retries": 0,
        "analyzer_version": ANALYZER_VERSION,
    }
