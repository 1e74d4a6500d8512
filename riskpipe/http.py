"""The worker's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

An ASGI app (Starlette) served by uvicorn inside the worker's own event loop:
no thread, no process, and no signal handlers of uvicorn's own, since the
worker decides when to stop. The routes come from :func:`health_routes`, so a
larger app (the HTTP API) can serve them beside its own; :class:`AppServer`
serves any ASGI app the same way.

``/metrics`` is ``prometheus_client``'s own exposition, with its content
negotiation: the OpenMetrics format when the ``Accept`` header asks for it,
gzip when ``Accept-Encoding`` allows it. Every route answers ``HEAD`` too.
A request whose header block is larger than :data:`MAX_HEADER_BYTES` is
answered ``431`` and its connection closed; a connection that sends no
request within :data:`FIRST_REQUEST_SECONDS` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import h11
import structlog
import uvicorn
from prometheus_client.exposition import choose_encoder, gzip_accepted
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from riskpipe.errors import HttpServerError

if TYPE_CHECKING:
    from collections.abc import Generator

    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "FIRST_REQUEST_SECONDS",
    "MAX_HEADER_BYTES",
    "AppServer",
    "Check",
    "HealthServer",
    "always_alive",
    "health_routes",
]

MAX_HEADER_BYTES = 64 * 1024
"""The largest request line plus header block a request may have."""
FIRST_REQUEST_SECONDS = 10.0
"""How long a new connection may take to send its first request's headers."""

Check: TypeAlias = Callable[[], tuple[bool, str]]
"""A health check: ``(ok, reason)``; the reason is the response body."""

_log = structlog.get_logger(__name__)
_SHUTDOWN_GRACE_SECONDS = 2


def always_alive() -> tuple[bool, str]:
    """The default liveness: alive while the process can answer."""
    return True, "ok"


def health_routes(
    *,
    registry: CollectorRegistry,
    readiness: Check,
    liveness: Check = always_alive,
) -> list[Route]:
    """``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``, each GET and HEAD.

    A check answers 200 with its reason when ok, 503 with its reason otherwise.
    """
    return [
        Route("/healthz", _check_endpoint(liveness), methods=["GET"]),
        Route("/readyz", _check_endpoint(readiness), methods=["GET"]),
        Route("/metrics", _metrics_endpoint(registry), methods=["GET"]),
    ]


def _check_endpoint(
    check: Check,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_: Request) -> Response:
        ok, reason = check()
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    return endpoint


def _metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        try:
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        except (TypeError, ValueError):  # prometheus_client fails on a non-numeric version=
            encoder, content_type = choose_encoder("")
        names = request.query_params.getlist("name[]")
        body = encoder(registry.restricted_registry(names) if names else registry)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return Response(body, headers=headers, media_type=content_type)

    return metrics


class _HeaderLimit:
    """ASGI middleware: 431 for a request whose request line and headers exceed the limit.

    The HTTP parser bounds a header block that is still arriving; a complete one
    read in a single chunk reaches the app, and is measured here.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _head_size(scope) > self.limit:
            await _too_large()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _head_size(scope: Scope) -> int:
    """The bytes of a request's line and headers as sent (give or take optional spaces)."""
    query = scope.get("query_string") or b""
    target = len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
    line = len(scope["method"]) + 1 + target + len(" HTTP/") + len(scope["http_version"]) + 2
    return line + sum(len(name) + 2 + len(value) + 2 for name, value in scope["headers"]) + 2


_TOO_LARGE = f"request header fields too large (limit {MAX_HEADER_BYTES} bytes)\n".encode()


def _too_large() -> Response:
    return PlainTextResponse(_TOO_LARGE, status_code=431, headers={"Connection": "close"})


class _HintedConnection(h11.Connection):
    """An h11 server connection that keeps the status h11 suggests for a bad request."""

    error_status = 400

    def next_event(self) -> h11.Event | type[h11.NEED_DATA | h11.PAUSED]:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise


class _H11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with 431 for a header block over the limit and a first deadline.

    uvicorn answers 400 to every request h11 rejects, although h11 says which
    status fits; and it waits for a new connection's first request forever.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - uvicorn's own
        super().__init__(*args, **kwargs)
        self.conn = _HintedConnection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Serve a connection, and drop it if no request arrives in time (slow clients).

        Nagle's algorithm is turned off, as asyncio does only for sockets it
        creates itself: uvicorn writes a response's head and body apart, and
        on a kept-alive connection the body would otherwise wait for the
        client's delayed ACK of the head (about 40 ms per request).
        """
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in {socket.AF_INET, socket.AF_INET6}:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._deadline = self.loop.call_later(FIRST_REQUEST_SECONDS, self._drop_if_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection's deadline."""
        self._deadline.cancel()
        super().connection_lost(exc)

    def _drop_if_idle(self) -> None:
        if self.cycle is None:  # uvicorn starts a cycle once a request's headers are in
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer a request h11 could not parse, with h11's status for it."""
        if not isinstance(self.conn, _HintedConnection) or self.conn.error_status != 431:  # noqa: PLR2004
            super().send_400_response(msg)
            return
        head = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=431, headers=head, reason=b"Request Header Fields Too Large"),
            h11.Data(data=_TOO_LARGE),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn in a caller's event loop: it leaves SIGTERM and SIGINT to the caller."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install no signal handler: the worker owns the signals and stops the server."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then say so."""
        await super().startup(sockets)
        self.serving.set()


class _ToStructlog(logging.Handler):
    """Sends uvicorn's log records (warnings and errors only) to structlog, as one line each."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        _log.log(
            record.levelno,
            "http.server",
            message=record.getMessage(),
            exc_info=record.exc_info or False,
        )


def _route_uvicorn_logs() -> None:
    """Send uvicorn's logs through structlog instead of stderr as plain text (idempotent)."""
    logger = logging.getLogger("uvicorn")
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
    logger.setLevel(logging.WARNING)
    logger.propagate = False


class AppServer:
    """Serves an ASGI app on ``host:port`` (port 0 picks a free one), in the caller's loop.

    The request line and headers are bounded (:data:`MAX_HEADER_BYTES`, 431),
    and a connection that sends no request in time is closed, whatever the app.
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self.host = host
        self.port = port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> ASGIApp:
        """The ASGI app this server serves."""
        return _HeaderLimit(self._app)

    async def start(self) -> None:
        """Bind and start serving; ``port`` then holds the bound port.

        Raises:
            HttpServerError: the address cannot be bound.
        """
        sock = await _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        _route_uvicorn_logs()
        config = uvicorn.Config(
            self.app(),
            http=_H11Protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE_SECONDS,
        )
        server = self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
        serving = asyncio.create_task(server.serving.wait())
        await asyncio.wait({self._task, serving}, return_when=asyncio.FIRST_COMPLETED)
        if not serving.done():
            serving.cancel()
            sock.close()
            await self._task  # raises what stopped it
            raise HttpServerError(self.host, self.port, "the server stopped while starting")

    async def stop(self) -> None:
        """Stop listening, finish open requests (2 s at most), close connections."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except Exception as exc:  # noqa: BLE001 - stopping must not hide what stopped the worker
            _log.warning("http.stop_failed", error=str(exc))
        self._server = self._task = None


class HealthServer(AppServer):
    """Serves health, readiness and metrics on ``host:port`` (port 0 picks a free one).

    ``readiness`` and ``liveness`` are called on every request to ``/readyz`` and
    ``/healthz``: they must be quick and must not block.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        readiness: Check,
        liveness: Check = always_alive,
        host: str = "127.0.0.1",
        port: int = 9464,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness
        routes = health_routes(registry=registry, readiness=readiness, liveness=liveness)
        super().__init__(Starlette(routes=routes), host=host, port=port)


async def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one clear error."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address, family=family)
    except OSError as exc:  # socket.gaierror included
        raise HttpServerError(host, port, _reason(exc, port)) from exc
    return sock


def _reason(exc: OSError, port: int) -> str:
    # create_server's message repeats the address: the bare system message is enough
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    if exc.errno == errno.EACCES and 0 < port < 1024:  # noqa: PLR2004 - privileged ports
        reason += " (ports below 1024 need privileges)"
    return reason
