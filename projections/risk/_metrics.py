"""Metrics of the risk projection: assessments by level, and which analyzer scored them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Info

__all__ = ["RiskMetrics"]


class RiskMetrics:
    """Assessments by level and degraded flag; the analyzer's version and config fingerprint."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.assessments = Counter(
            "riskpipe_risk_assessments_total",
            "Assessments written, by risk level and whether they were degraded.",
            ["level", "degraded"],
            registry=registry,
        )
        self.foreign_messages = Counter(
            "riskpipe_risk_foreign_messages_total",
            "Messages found on an entity's risk subject that are not valid assessments"
            " (skipped: the entity builds on its last valid assessment).",
            registry=registry,
        )
        self.analyzer = Info(
            "riskpipe_analyzer",
            "The analyzer version and config fingerprint this worker scores with.",
            registry=registry,
        )
