"""Prometheus metrics of the SQL read model, on a registry the caller passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ReadModelMetrics"]

_TRANSACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ReadModelMetrics:
    """Events applied, lag and position per source stream, and how long each batch took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "riskpipe_readmodel_events_total",
            "Messages read into the read model, by stream and outcome (applied: rows changed"
            " or confirmed; skipped: not an event the read model keeps).",
            ["stream", "outcome"],
            registry=registry,
        )
        self.lag = Gauge(
            "riskpipe_readmodel_lag_messages",
            "The stream's last sequence minus the read model's position in it.",
            ["stream"],
            registry=registry,
        )
        self.position = Gauge(
            "riskpipe_readmodel_position",
            "The last sequence of the stream applied to the active generation.",
            ["stream"],
            registry=registry,
        )
        self.transaction = Histogram(
            "riskpipe_readmodel_transaction_seconds",
            "One batch: its rows and its tracking position written in one transaction.",
            buckets=_TRANSACTION_BUCKETS,
            registry=registry,
        )
        self.conflicts = Counter(
            "riskpipe_readmodel_tracking_conflicts_total",
            "Batches rolled back because another process had moved the tracking position.",
            ["stream"],
            registry=registry,
        )
        self.generation = Gauge(
            "riskpipe_readmodel_generation",
            "The generation this process writes into.",
            registry=registry,
        )
