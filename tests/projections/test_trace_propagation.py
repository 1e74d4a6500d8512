"""With tracing off, a worker still passes the producer's W3C trace context on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.cli import riskpipe
from support.events import evidence
from support.pipeline import read_streams

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
STATE = "vendor1=opaque,vendor2=x"


async def _append_as_sent(store: EventStore, event_id: str, headers: dict[str, str]) -> None:
    """Store an evidence event with exactly these headers (as a producer sent them).

    Not through ``append``: where this test process has tracing on, its own
    producer span would replace the traceparent.
    """
    payload = evidence(event_id).model_dump_json(exclude_none=True).encode()
    await store.append_unchecked("evidence", "t1", "e1", payload, msg_id=event_id, headers=headers)


def _worker_without_tracing(url: str) -> None:
    """A real worker process, with no OpenTelemetry SDK set up (the default)."""
    result = riskpipe("worker", "--until-idle", "--no-http", env={"RISKPIPE_NATS_URL": url})
    assert result.returncode == 0, result.stderr


async def test_assessments_and_dead_letters_carry_the_incoming_trace(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The assessment and the dead letter keep the evidence's traceparent and tracestate."""
    trace = {"traceparent": PARENT, "tracestate": STATE}
    await _append_as_sent(store, "good", trace)
    await store.append_unchecked("evidence", "t1", "e2", b"{broken", msg_id="poison", headers=trace)
    _worker_without_tracing(nats_server.url)
    streams = await read_streams(store)
    (headers,) = streams.assessment_headers
    assert (headers.get("traceparent"), headers.get("tracestate")) == (PARENT, STATE)
    (letter,) = [rec async for rec in store.read_all(stream="DLQ")]
    assert letter.event is not None
    assert (letter.event.data or {})["trace_id"] == TRACE_ID
    assert letter.headers.get("traceparent") == PARENT


async def test_a_malformed_traceparent_is_not_passed_on(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Only a valid W3C traceparent travels on: a forged one is dropped, with its tracestate."""
    bad = {"traceparent": "00-zz-not-a-trace-" + "x" * 300, "tracestate": STATE}
    await _append_as_sent(store, "bad", bad)
    await _append_as_sent(store, "none", {})
    _worker_without_tracing(nats_server.url)
    streams = await read_streams(store)
    for headers in streams.assessment_headers:
        assert "traceparent" not in headers
        assert "tracestate" not in headers
