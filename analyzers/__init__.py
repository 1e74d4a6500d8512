"""Pure, deterministic, explainable risk scoring.

Given an entity's prior :class:`EntityRiskState` and one piece of
:class:`Evidence`, :func:`assess` returns an :class:`Assessment` and the next
state. Nothing here does I/O or reads a clock; the optional enrichment edge
(HTTP, retries, circuit breaker) lives in :mod:`analyzers.enrichment`.
"""

from analyzers._assessment import Assessment
from analyzers._config import (
    AnalyzerConfig,
    ConfidenceWeights,
    LevelRecommendations,
    LevelThresholds,
    RecommendationCatalogue,
    SeverityWeights,
)
from analyzers._construct import trusted
from analyzers._entries import EvidenceEvent, LogEntry
from analyzers._evidence import (
    EVIDENCE_RECORDED,
    EVIDENCE_RECORDED_V2,
    EVIDENCE_TYPES,
    Evidence,
    EvidenceData,
    EvidenceDataV2,
    ObservedTime,
    PatternName,
    Severity,
    observed_or_event_time,
    upcast_evidence,
)
from analyzers._facade import (
    FALLBACK_LEVEL,
    FALLBACK_SCORE,
    analysis_report,
    analyze_evidence_log,
    analyze_risk_patterns,
    fallback_report,
)
from analyzers._levels import RiskLevel, resolve_level
from analyzers._loading import load_config, load_settings_file
from analyzers._log import parse_evidence_log
from analyzers._review import ReviewSignal
from analyzers._scoring import (
    applied_modifier,
    assess,
    assess_many,
    conservative_assessment,
    decayed_score,
)
from analyzers._signal import Enricher, EnrichmentSignal
from analyzers._state import EntityRiskState
from analyzers._version import ANALYZER_VERSION, REDERIVABLE_VERSIONS
from analyzers.errors import (
    AnalyzerError,
    DependencyUnavailable,
    EnrichmentRejectedError,
    EnrichmentResponseError,
    EnrichmentTransientError,
    EvidenceAlreadyAppliedError,
    InvalidConfigError,
    InvalidEvidenceError,
    TransientAnalyzerError,
)

__all__ = [
    "ANALYZER_VERSION",
    "EVIDENCE_RECORDED",
    "EVIDENCE_RECORDED_V2",
    "EVIDENCE_TYPES",
    "FALLBACK_LEVEL",
    "FALLBACK_SCORE",
    "REDERIVABLE_VERSIONS",
    "AnalyzerConfig",
    "AnalyzerError",
    "Assessment",
    "ConfidenceWeights",
    "DependencyUnavailable",
    "Enricher",
    "EnrichmentRejectedError",
    "EnrichmentResponseError",
    "EnrichmentSignal",
    "EnrichmentTransientError",
    "EntityRiskState",
    "Evidence",
    "EvidenceAlreadyAppliedError",
    "EvidenceData",
    "EvidenceDataV2",
    "EvidenceEvent",
    "InvalidConfigError",
    "InvalidEvidenceError",
    "LevelRecommendations",
    "LevelThresholds",
    "LogEntry",
    "ObservedTime",
    "PatternName",
    "RecommendationCatalogue",
    "ReviewSignal",
    "RiskLevel",
    "Severity",
    "SeverityWeights",
    "TransientAnalyzerError",
    "analysis_report",
    "analyze_evidence_log",
    "analyze_risk_patterns",
    "applied_modifier",
    "assess",
    "assess_many",
    "conservative_assessment",
    "decayed_score",
    "fallback_report",
    "load_config",
    "load_settings_file",
    "observed_or_event_time",
    "parse_evidence_log",
    "resolve_level",
    "trusted",
    "upcast_evidence",
]
