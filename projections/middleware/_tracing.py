"""Tracing: continue the producer's trace, so one trace spans publish, process, and results."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from eventstore import tracing_enabled

if TYPE_CHECKING:
    from projections._message import Handler, Message, Result

__all__ = ["incoming_trace", "tracing"]

tracer = trace.get_tracer("projections")


_TRACE_HEADERS = ("traceparent", "tracestate")


def incoming_trace(headers: dict[str, str]) -> dict[str, str] | None:
    """The W3C trace headers to pass on from ``headers``, or ``None`` when there is no valid one.

    Read and re-written by the configured propagator (W3C trace context by
    default), so a malformed or oversized ``traceparent`` is dropped, never
    forwarded.
    """
    if "traceparent" not in headers:
        return None
    parent = propagate.extract(headers)
    if not trace.get_current_span(parent).get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=parent)
    return {k: v for k, v in carrier.items() if k in _TRACE_HEADERS} or None


def _passed_on(result: Result, headers: dict[str, str]) -> Result:
    """``result`` with the incoming trace headers on every output that has none of its own."""
    if not result.outputs:
        return result
    outputs = tuple(
        o if "traceparent" in o.headers else replace(o, headers={**o.headers, **headers})
        for o in result.outputs
    )
    return replace(result, outputs=outputs)


def tracing(handler: Handler) -> Handler:
    """Continue the producer's trace: in a consumer span, or by passing its context on.

    With tracing on, ``traceparent`` is extracted from the delivery and the
    message is handled in a consumer span whose context is kept on the
    message: the runner commits the outputs under it, so assessments and dead
    letters carry the same trace. With tracing off (no SDK), no span is made,
    but the incoming ``traceparent`` and ``tracestate`` are passed on
    unchanged to what the message produces, as W3C trace context asks of a
    service that records nothing. Either way the trace id goes into the
    message's log fields and its dead letter.
    """

    async def passing_on(message: Message) -> Result:
        headers = incoming_trace(message.delivery.headers)
        if headers is None:
            return await handler(message)
        trace_id = headers["traceparent"].split("-")[1]
        message.context["trace_id"] = message.log["trace_id"] = trace_id
        message.context["trace_headers"] = headers
        return _passed_on(await handler(message), headers)

    async def traced(message: Message) -> Result:
        if not tracing_enabled():
            message.context["traced"] = False
            if "traceparent" in message.delivery.headers:
                return await passing_on(message)
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
