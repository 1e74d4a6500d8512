"""The enrichment edge's Prometheus metrics, created on a registry the caller owns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["BREAKER_STATES", "OUTCOMES", "EnrichmentMetrics"]

OUTCOMES = ("success", "transient", "unavailable", "rejected", "invalid")
BREAKER_STATES = ("closed", "half_open", "open")


@dataclass(frozen=True, slots=True)
class EnrichmentMetrics:
    """Calls by outcome, retries, per-attempt latency, breaker state and transitions."""

    calls: Counter
    retries: Counter
    latency: Histogram
    breaker_state: Gauge
    transitions: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> EnrichmentMetrics:
        """Create the metrics on ``registry``, every label value starting at zero."""
        metrics = cls(
            calls=Counter(
                "riskpipe_enrichment_calls",
                "Enrichment calls by outcome: success, transient, unavailable, rejected, invalid.",
                ["outcome"],
                registry=registry,
            ),
            retries=Counter(
                "riskpipe_enrichment_retries",
                "Enrichment HTTP attempts retried after a transient failure.",
                registry=registry,
            ),
            latency=Histogram(
                "riskpipe_enrichment_latency_seconds",
                "Duration of each enrichment HTTP attempt, in seconds.",
                registry=registry,
            ),
            breaker_state=Gauge(
                "riskpipe_enrichment_breaker_state",
                "Enrichment circuit breaker state: 0 closed, 1 half-open, 2 open.",
                registry=registry,
            ),
            transitions=Counter(
                "riskpipe_enrichment_breaker_transitions",
                "Enrichment circuit breaker state changes, by the state entered.",
                ["to"],
                registry=registry,
            ),
        )
        for outcome in OUTCOMES:
            metrics.calls.labels(outcome=outcome)
        for state in BREAKER_STATES:
            metrics.transitions.labels(to=state)
        return metrics
