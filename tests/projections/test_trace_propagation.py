"""With tracing off, a worker still passes the producer's W3C trace context on."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import read_streams

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
STATE = "vendor1=opaque,vendor2=x"


def _worker_without_tracing(url: str) -> None:
    """A real worker process, with no OpenTelemetry SDK set up (the default)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "riskpipe",
            "--nats-url",
            url,
            "worker",
            "--until-idle",
            "--no-http",
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("RISKPIPE_", "OTEL_"))},
    )


async def test_assessments_and_dead_letters_carry_the_incoming_trace(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The assessment and the dead letter keep the evidence's traceparent and tracestate."""
    trace = {"traceparent": PARENT, "tracestate": STATE}
    await store.append(evidence("good"), headers=trace)
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
    await store.append(evidence("good"), headers=bad)
    await store.append(evidence("none", minute=1))
    _worker_without_tracing(nats_server.url)
    streams = await read_streams(store)
    for headers in streams.assessment_headers:
        assert "traceparent" not in headers
        assert "tracestate" not in headers
