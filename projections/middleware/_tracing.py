"""Tracing: continue the producer's trace, so one trace spans publish, process, and results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from eventstore import tracing_enabled

if TYPE_CHECKING:
    from projections._message import Handler, Message, Result

__all__ = ["tracing"]

tracer = trace.get_tracer("projections")


def tracing(handler: Handler) -> Handler:
    """Extract ``traceparent`` from the delivery and handle the message in a consumer span.

    The span's context is kept on the message: the runner commits the outputs
    under it, so assessments and dead letters carry the same trace. Its ids go
    into the message's log fields.
    """

    async def traced(message: Message) -> Result:
        if not tracing_enabled():
            message.context["traced"] = False
            return await handler(message)
        message.context["traced"] = True
        delivery = message.delivery
        parent = propagate.extract(delivery.headers)
        with tracer.start_as_current_span(
            f"process {delivery.subject}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": delivery.subject,
                "messaging.consumer.group.name": message.projection,
                "messaging.message.id": delivery.headers.get("Nats-Msg-Id", ""),
                "messaging.nats.stream": delivery.stream,
                "messaging.nats.stream_sequence": delivery.stream_seq,
                "messaging.nats.delivery_count": delivery.num_delivered,
            },
        ) as span:
            ctx = span.get_span_context()
            if ctx.is_valid:
                message.context["trace_id"] = format(ctx.trace_id, "032x")
                message.log["trace_id"] = message.context["trace_id"]
                message.log["span_id"] = format(ctx.span_id, "016x")
            message.context["otel_context"] = trace.set_span_in_context(span)
            result = await handler(message)
            span.set_attribute("riskpipe.outcome", result.outcome)
            return result

    return traced
