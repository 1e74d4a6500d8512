"""Each request counted, timed and logged: ``riskpipe_api_*`` metrics and ``api.request`` lines.

Requests are labelled by route template (``/api/dead-letters/{sequence}``),
never by path, so a scan of made-up paths adds no series: a request no route
matched is labelled ``unmatched``. The access line names who made the
request (the token's name and role), never the token, the headers or the
query string.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiMetrics", "Observed", "principal_of"]

_log = structlog.get_logger("riskpipe.api")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PRINCIPAL_KEY = "riskpipe.principal"
"""Where the authenticated principal is kept in the request's ``state``."""


class ApiMetrics:
    """The API's metrics, on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "riskpipe_api_requests_total",
            "API requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "riskpipe_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=registry,
        )


def principal_of(scope: Scope) -> tuple[str, str] | None:
    """The ``(name, role)`` a request was authenticated as, if it was."""
    found = (scope.get("state") or {}).get(PRINCIPAL_KEY)
    return None if found is None else (found.name, found.role)


_PLAIN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
"""Routes without a template: their path is their label."""


def _route(scope: Scope) -> str:
    """The route template the request matched, or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope["path"] in _PLAIN_ROUTES else "unmatched"


class Observed:
    """ASGI middleware: count, time and log every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            seconds = time.perf_counter() - started
            route, method = _route(scope), scope["method"]
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(seconds)
            who = principal_of(scope)
            _log.info(
                "api.request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                ms=round(seconds * 1000, 1),
                **({"name": who[0], "role": who[1]} if who else {}),
            )
