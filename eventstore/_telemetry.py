"""What the event store emits: Prometheus metrics (on a registry passed in) and trace context.

The store only *emits*: it never configures an exporter. Without an
OpenTelemetry SDK installed by the application, spans are no-ops and nothing
is added to message headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from opentelemetry import propagate, trace
from prometheus_client import CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["AppendOutcome", "StoreMetrics", "inject_trace", "tracer", "tracing_enabled"]

AppendOutcome = Literal["stored", "duplicate", "conflict", "rejected"]
tracer = trace.get_tracer("eventstore")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class StoreMetrics:
    """Append counters by outcome and an append latency histogram (label: stream)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.appends = Counter(
            "riskpipe_store_appends_total",
            "Events appended, by stream and outcome (stored, duplicate, conflict, rejected).",
            ["stream", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "riskpipe_store_append_seconds",
            "From sending an event to its acknowledgement by JetStream.",
            ["stream"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._appends: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def record(self, stream: str, outcome: AppendOutcome, seconds: float | None = None) -> None:
        """Count one append, and its latency when it reached the server."""
        # labelled children are looked up once each: .labels() costs more than .inc()
        if (counter := self._appends.get((stream, outcome))) is None:
            counter = self._appends[stream, outcome] = self.appends.labels(stream, outcome)
        counter.inc()
        if seconds is not None:
            if (histogram := self._latency.get(stream)) is None:
                histogram = self._latency[stream] = self.latency.labels(stream)
            histogram.observe(seconds)


_UNKNOWN = object()


def tracing_enabled() -> bool:
    """Whether an SDK tracer provider is installed (otherwise spans are no-ops: skip the work)."""
    # The global that trace.set_tracer_provider sets, read directly: the public
    # getter reads the environment on every call, twice per message here. (A
    # provider named by OTEL_PYTHON_TRACER_PROVIDER is loaded into it by the
    # getter, which this module's get_tracer call runs at import.)
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _UNKNOWN:  # another opentelemetry-api: the public way
        provider = trace.get_tracer_provider()
    return provider is not None and not isinstance(
        provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )


def inject_trace(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's W3C ``traceparent``/``tracestate`` to ``headers`` (if any)."""
    propagate.inject(headers)
    return headers


def span_attributes(subject: str, stream: str, message_id: str | None) -> Iterator[tuple[str, str]]:
    """Messaging semantic-convention attributes of a publish."""
    yield "messaging.system", "nats"
    yield "messaging.operation.type", "send"
    yield "messaging.destination.name", subject
    yield "messaging.nats.stream", stream
    if message_id is not None:
        yield "messaging.message.id", message_id
