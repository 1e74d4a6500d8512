"""Observability for real: metrics after a pipeline run, one trace end to end, bound log fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from support.events import evidence
from support.pipeline import read_streams, run_worker

from projections.logctx import merge_message_context

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore import EventStore
    from riskpipe.server import NatsServer

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def _tracer_provider() -> Iterator[TracerProvider]:
    """An SDK tracer provider for this module's tests, taken away after them.

    The global can be set only once through the API, so it is reset the way
    OpenTelemetry's own test utilities do; otherwise every later test would
    run with tracing on (the store then never appends without waiting).
    """
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    yield provider
    provider.shutdown()
    trace._TRACER_PROVIDER = None  # noqa: SLF001 - no public way to unset the global
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # noqa: SLF001


@pytest.fixture
def spans(_tracer_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _sample(worker: object, name: str, labels: dict[str, str]) -> float:
    return worker.registry.get_sample_value(name, labels) or 0.0  # type: ignore[attr-defined]


async def test_metrics_count_what_happened(nats_server: NatsServer, store: EventStore) -> None:
    """After a real run the metrics match what was published: assessed, dead-lettered, levels."""
    for i in range(12):
        await store.append(evidence(f"m{i}", entity=f"e{i % 3}", minute=i))
    await store.append_unchecked("evidence", "t1", "e9", b"{nope", msg_id="poison:1")
    worker = await run_worker(store, nats_server.url)
    await worker.observe_dlq()
    messages = "riskpipe_projection_messages_total"
    assert _sample(worker, messages, {"projection": "risk", "outcome": "assessed"}) == 12
    assert _sample(worker, messages, {"projection": "risk", "outcome": "dead_lettered"}) == 1
    by_level = sum(
        _sample(worker, "riskpipe_risk_assessments_total", {"level": level, "degraded": "false"})
        for level in ("low", "medium", "high", "critical")
    )
    assert by_level == 12
    appended = _sample(
        worker, "riskpipe_store_appends_total", {"stream": "RISK", "outcome": "stored"}
    )
    assert appended == 12
    assert (
        _sample(worker, "riskpipe_store_appends_total", {"stream": "DLQ", "outcome": "stored"}) == 1
    )
    assert _sample(worker, "riskpipe_dlq_depth_messages", {"projection": "risk"}) == 1
    assert _sample(worker, "riskpipe_dlq_oldest_age_seconds", {"projection": "risk"}) >= 0
    checkpoints = [
        _sample(
            worker,
            "riskpipe_projection_checkpoint_sequence",
            {"projection": "risk", "consumer": f"risk-{p}"},
        )
        for p in range(store.config.partitions)
    ]
    assert max(checkpoints) == 13, "the partition of the last message checkpointed it"
    assert (
        _sample(worker, "riskpipe_projection_processing_seconds_count", {"projection": "risk"})
        == 13
    )
    info = worker.registry.get_sample_value(
        "riskpipe_analyzer_info",
        {"version": worker.projection.config.analyzer_version,
         "config_fingerprint": worker.projection.config.fingerprint()},
    )  # fmt: skip
    assert info == 1


async def test_one_trace_from_publish_to_assessment(
    nats_server: NatsServer, store: EventStore, spans: InMemorySpanExporter
) -> None:
    """The producer's trace id reaches the worker's spans and the assessment's traceparent."""
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("producer request") as root:
        await store.append(evidence("tr1"))
    trace_id = root.get_span_context().trace_id
    await run_worker(store, nats_server.url)
    finished = {span.name: span for span in spans.get_finished_spans()}
    processed = "process " + store.config.stored("rp.evidence.t1.e1")  # as delivered
    for name in (
        "send rp.evidence.t1.e1",
        processed,
        "analyze",
        "send rp.risk.t1.e1",
    ):
        assert name in finished, f"missing span {name}: {sorted(finished)}"
        assert finished[name].context.trace_id == trace_id, name
    process = finished[processed]
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.attributes["messaging.system"] == "nats"
    assert process.attributes["messaging.nats.stream_sequence"] == 1
    streams = await read_streams(store)
    traceparent = streams.assessment_headers[0]["traceparent"]
    assert traceparent.split("-")[1] == format(trace_id, "032x")


async def test_log_lines_in_handling_carry_the_message_fields(
    nats_server: NatsServer, store: EventStore, spans: InMemorySpanExporter
) -> None:
    """A log line written while handling names trace, span, evidence, entity, seq and delivery."""
    del spans  # a recording tracer, so trace ids exist
    # a valid event about entity e9, stored on e1's subject: dead-lettered once it is read
    misaddressed = evidence("old1", entity="e9").model_dump_json(exclude_none=True).encode()
    await store.append_unchecked("evidence", "t1", "e1", misaddressed, msg_id="misaddressed")
    with structlog.testing.capture_logs(processors=[merge_message_context]) as logs:
        await run_worker(store, nats_server.url)
    [line] = [entry for entry in logs if entry["event"] == "projection.dead_lettered"]
    for key in ("trace_id", "span_id", "tenant", "entity", "stream_seq", "delivery_count"):
        assert key in line, key
    assert line["evidence_id"] == "old1"
    assert (line["tenant"], line["entity"], line["stream_seq"]) == ("t1", "e1", 1)
    assert "original" not in line, "no payload contents in logs"
