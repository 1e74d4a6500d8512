"""Prometheus metrics of a projection, on a registry the caller passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ProjectionMetrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class ProjectionMetrics:
    """Counters, gauges and histograms of one worker's projections.

    Every series has the label ``projection``; the gauges that describe one
    durable consumer (lag, checkpoint, pause) also have ``consumer``, as a
    projection over a partitioned stream runs one consumer per partition.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "riskpipe_projection_messages_total",
            "Messages handled, by outcome"
            " (assessed, duplicate_skipped, retried, dead_lettered, paused).",
            ["projection", "outcome"],
            registry=registry,
        )
        self.processing = Histogram(
            "riskpipe_projection_processing_seconds",
            "From receiving a message to acknowledging it.",
            ["projection"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "riskpipe_projection_end_to_end_seconds",
            "From the evidence being stored to its result being acknowledged.",
            ["projection"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.redeliveries = Counter(
            "riskpipe_projection_redeliveries_total",
            "Deliveries that were not a message's first.",
            ["projection"],
            registry=registry,
        )
        self.pending = Gauge(
            "riskpipe_projection_consumer_pending_messages",
            "Messages in the stream not yet delivered to the consumer (lag).",
            ["projection", "consumer"],
            registry=registry,
        )
        self.ack_pending = Gauge(
            "riskpipe_projection_consumer_ack_pending_messages",
            "Messages delivered and not yet acknowledged.",
            ["projection", "consumer"],
            registry=registry,
        )
        self.checkpoint = Gauge(
            "riskpipe_projection_checkpoint_sequence",
            "The last checkpoint written: every sequence at or below it is committed.",
            ["projection", "consumer"],
            registry=registry,
        )
        self.checkpoints_refused = Counter(
            "riskpipe_projection_checkpoints_refused_total",
            "Stored checkpoints refused at start (malformed, no_generation, other_generation,"
            " beyond_stream): the runner started without them.",
            ["projection", "reason"],
            registry=registry,
        )
        self.paused = Gauge(
            "riskpipe_projection_paused",
            "1 while consumption is paused because a dependency is down.",
            ["projection", "consumer"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "riskpipe_projection_in_flight_messages",
            "Messages received and not yet acknowledged or released by this worker.",
            ["projection", "consumer"],
            registry=registry,
        )
        self.fetch_failures = Counter(
            "riskpipe_projection_fetch_failures_total",
            "Fetches that failed transiently (NATS away, the consumer's leader being"
            " elected); the runner waits and fetches again.",
            ["projection"],
            registry=registry,
        )
