"""The HTTP endpoints' protocol: HEAD, content negotiation, limits, binding, signals and logs."""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

import riskpipe.http
from riskpipe.errors import HttpServerError
from riskpipe.http import MAX_HEADER_BYTES, HealthServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from riskpipe.http import Check

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("demo_events", "Events seen.", registry=registry).inc(3)
    return registry


@pytest.fixture
async def server() -> AsyncIterator[HealthServer]:
    """A health server on a free port, ready, stopped after the test."""
    http = HealthServer(registry=_registry(), readiness=lambda: (True, "ready"), port=0)
    await http.start()
    try:
        yield http
    finally:
        await http.stop()


def _client(http: HealthServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}")


async def _raw(port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


async def test_head_answers_like_get_without_a_body(server: HealthServer) -> None:
    """HEAD on every endpoint gets GET's status and length, and no body."""
    async with _client(server) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            got, head = await client.get(path), await client.head(path)
            assert (head.status_code, head.content) == (got.status_code, b""), path
            assert head.headers["content-length"] == got.headers["content-length"], path


async def test_metrics_negotiate_openmetrics(server: HealthServer) -> None:
    """An OpenMetrics Accept header gets OpenMetrics; none gets the Prometheus text format."""
    async with _client(server) as client:
        om = await client.get("/metrics", headers={"Accept": OPENMETRICS})
        text = await client.get("/metrics")
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    assert "demo_events_total 3.0" in om.text
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in text.text
    assert "demo_events_total 3.0" in text.text


async def test_a_malformed_accept_header_gets_the_text_format(server: HealthServer) -> None:
    """An OpenMetrics Accept with a non-numeric version gets the text format, not a 500."""
    async with _client(server) as client:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=abc"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


async def test_metrics_are_gzipped_when_accepted(server: HealthServer) -> None:
    """Accept-Encoding: gzip gets a gzipped body (as Prometheus asks for it)."""
    async with _client(server) as client:
        response = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "demo_events_total 3.0" in response.text  # httpx decompressed it


async def test_metrics_can_be_filtered_by_name() -> None:
    """``?name[]=`` limits the exposition to the metrics named."""
    registry = _registry()
    Counter("other_events", "Other events.", registry=registry).inc()
    http = HealthServer(registry=registry, readiness=lambda: (True, "ok"), port=0)
    await http.start()
    try:
        async with _client(http) as client:
            response = await client.get("/metrics", params={"name[]": "other_events_total"})
    finally:
        await http.stop()
    assert "other_events_total 1.0" in response.text
    assert "demo_events" not in response.text


def _request_of(size: int, *, complete: bool = True) -> bytes:
    """A GET /healthz whose request line and headers are exactly ``size`` bytes."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
    end = b"\r\n\r\n" if complete else b""
    return head + b"a" * (size - len(head) - len(end)) + end


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "still-arriving"])
async def test_an_oversized_header_gets_431(server: HealthServer, complete: bool) -> None:  # noqa: FBT001
    """A header block one byte over the limit, complete or not, gets 431; the server lives on."""
    with capture_logs():  # the parser's warning about the bad request
        answer = await _raw(server.port, _request_of(MAX_HEADER_BYTES + 1, complete=complete))
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"request header fields too large" in answer
    async with _client(server) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_header_block_at_the_limit_is_served(server: HealthServer) -> None:
    """A request whose line and headers are exactly the limit is served normally."""
    answer = await _raw(server.port, _request_of(MAX_HEADER_BYTES))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nok\n")


async def test_a_connection_without_a_request_is_closed(
    server: HealthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that connects and sends nothing (or too slowly) is disconnected."""
    monkeypatch.setattr(riskpipe.http, "FIRST_REQUEST_SECONDS", 0.2)
    for start in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"):
        assert await _raw(server.port, start) == b""


async def test_unknown_paths_and_methods(server: HealthServer) -> None:
    """An unknown path is 404; a POST is 405 and names the allowed methods."""
    async with _client(server) as client:
        assert (await client.get("/nope")).status_code == 404
        post = await client.post("/metrics")
    assert post.status_code == 405
    assert set(post.headers["allow"].split(", ")) == {"GET", "HEAD"}


async def test_liveness_and_readiness_are_callbacks() -> None:
    """/healthz and /readyz answer 503 with the callbacks' reasons when they say not ok."""
    dead: Check = lambda: (False, "connection to NATS closed")  # noqa: E731
    unready: Check = lambda: (False, "projection starting")  # noqa: E731
    http = HealthServer(registry=_registry(), readiness=unready, liveness=dead, port=0)
    await http.start()
    try:
        async with _client(http) as client:
            healthz, readyz = await client.get("/healthz"), await client.get("/readyz")
    finally:
        await http.stop()
    assert (healthz.status_code, healthz.text) == (503, "connection to NATS closed\n")
    assert (readyz.status_code, readyz.text) == (503, "projection starting\n")


async def test_port_zero_binds_a_free_port_that_is_reported() -> None:
    """Port 0 picks a free port; ``port`` holds it once started, and it answers there."""
    http = HealthServer(registry=_registry(), readiness=lambda: (True, "ready"), port=0)
    await http.start()
    try:
        assert http.port > 0
        async with _client(http) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await http.stop()
    with pytest.raises(httpx.ConnectError):
        async with _client(http) as client:
            await client.get("/healthz")


async def test_a_busy_port_is_one_clear_error() -> None:
    """A port another socket listens on raises HttpServerError naming the address."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        http = HealthServer(registry=_registry(), readiness=lambda: (True, "ok"), port=port)
        with pytest.raises(HttpServerError) as raised:
            await http.start()
    assert str(raised.value) == f"cannot serve HTTP on 127.0.0.1:{port}: address already in use"


async def test_the_server_leaves_signals_to_the_worker() -> None:
    """Serving installs no SIGTERM/SIGINT handler: the worker's own stay in force."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)
    try:
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        http = HealthServer(registry=_registry(), readiness=lambda: (True, "ok"), port=0)
        await http.start()
        try:
            async with _client(http) as client:
                await client.get("/healthz")
            during = {sig: signal.getsignal(sig) for sig in before}
        finally:
            await http.stop()
        after = {sig: signal.getsignal(sig) for sig in before}
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    assert during == before
    assert after == before


async def test_server_warnings_go_through_structlog(
    server: HealthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request the parser rejects is a structlog record, not plain text on stderr."""
    with capture_logs() as logs:
        answer = await _raw(server.port, b"garbage\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert [(e["event"], e["log_level"]) for e in logs] == [("http.server", "warning")]
    assert capsys.readouterr().err == ""


async def test_connections_send_without_nagle(server: HealthServer) -> None:
    """Accepted sockets have TCP_NODELAY: a kept-alive response's body never waits for an ACK.

    asyncio sets it only on sockets it creates itself; without it each answer
    on a kept-alive connection took about 40 ms (head and body are two writes).
    """
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{server.host}:{server.port}/healthz")).status_code == 200
        embedded = server._server  # noqa: SLF001 - the accepted sockets are only in there
        assert embedded is not None
        connections = list(embedded.server_state.connections)
        assert connections, "the client's kept-alive connection"
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
