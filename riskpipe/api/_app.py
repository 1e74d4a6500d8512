"""The API's ASGI app: routers under ``/api``, problems for errors, metrics and access lines.

Each area of the API is an :class:`fastapi.APIRouter` in a module of its own
(``_system``, ``_dead_letters``), its prefix under :data:`API_PREFIX`,
listed in :data:`ROUTERS`; an area added later (cases) is one more router.
A route declares the permission it needs with
``Annotated[Principal, Depends(require(Permission.X))]`` (the table is in
``_roles``), checks the tenant of what it touches with
``principal.sees(tenant)`` and answers 404 when it does not, and declares its
errors with ``problems()``.

From the outside in, a request passes: the access log and metrics
(:class:`Observed`), the guard that turns an unhandled exception into a 500
problem (:class:`ProblemGuard`), the body limit (:class:`BodyLimit`), then
FastAPI's routing, authentication and validation.
``/healthz``, ``/readyz`` and ``/metrics`` are served beside ``/api``, as
the worker serves them, without a token.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.middleware import Middleware

from eventstore.errors import EventStoreError, NotProvisionedError, TransientStoreError
from riskpipe.api import _cases, _dead_letters, _evidence, _system
from riskpipe.api._auth import ApiContext
from riskpipe.api._limits import DEFAULT_MAX_BODY_BYTES, BodyLimit, BodyPolicy
from riskpipe.api._observe import ApiMetrics, Observed
from riskpipe.api._openapi import API_PREFIX, problem_openapi
from riskpipe.api._problems import ProblemGuard, install_problem_handlers, problem_response
from riskpipe.http import health_routes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi.dependencies.models import Dependant
    from prometheus_client import CollectorRegistry
    from starlette.responses import Response

    from eventstore import EventStore
    from projections.readmodel import ReadModelReader
    from riskpipe.api._tokens import TokenTable
    from riskpipe.console import ConsoleOptions

__all__ = ["API_PREFIX", "ROUTERS", "create_app"]

ROUTERS: tuple[APIRouter, ...] = (
    _system.router,
    _dead_letters.router,
    _cases.router,
    _evidence.router,
)
"""The API's areas; each router's prefix starts with :data:`API_PREFIX`."""
_RETRY_AFTER_SECONDS = 2
_log = structlog.get_logger("riskpipe.api")


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route and its dependencies declare."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def _known_query(request: Request) -> None:
    """Refuse a query parameter the route does not declare, as a body refuses an unknown field.

    Every parameter takes one value, so one given twice is refused too: which
    of its values counted would otherwise be the framework's choice (the last).

    Raises:
        RequestValidationError: 422, naming each unknown or repeated parameter.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _query_names(route.dependant))
    given = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in given.items() if count > 1 and name not in unknown)
    if unknown or repeated:
        raise RequestValidationError(
            [
                {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown parameter"}
                for name in unknown
            ]
            + [
                {"type": "too_long", "loc": ("query", name), "msg": "give it once, not twice"}
                for name in repeated
            ]
        )


async def _store_error(request: Request, exc: Exception) -> Response:
    """A store that cannot answer now is 503 (try again); any other store error is a 500."""
    path = request.url.path
    if isinstance(exc, TransientStoreError):
        _log.warning("api.store_unavailable", path=path, error=str(exc))
        return problem_response(
            path,
            503,
            "the event store cannot be reached right now; try again",
            headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, NotProvisionedError):
        _log.error("api.not_provisioned", path=path, error=str(exc))
        return problem_response(path, 503, "the event store is not provisioned (`riskpipe init`)")
    _log.error("api.store_error", path=path, error=str(exc), error_type=type(exc).__name__)
    return problem_response(path, 500, "the event store refused the request; it has been logged")


def _forms(limit: int) -> BodyPolicy:
    """The web console's pages: HTML forms' bodies beside JSON, within the usual limit."""
    return BodyPolicy(limit, frozenset({"application/x-www-form-urlencoded"}))


def create_app(  # noqa: PLR0913 - what the API serves, keyword-only
    *,
    store: EventStore,
    tokens: TokenTable,
    registry: CollectorRegistry,
    projection: str = "risk",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_evidence_bytes: int = _evidence.DEFAULT_MAX_EVIDENCE_BYTES,
    routers: Sequence[APIRouter] = ROUTERS,
    reader: ReadModelReader | None = None,
    console: ConsoleOptions | None = None,
    serve_console: bool = True,
) -> FastAPI:
    """The API of ``projection`` on ``store``, for the holders of ``tokens``.

    Metrics go to ``registry``, which ``/metrics`` serves. ``reader`` is the
    SQL read model the case list reads. ``max_evidence_bytes`` is the body
    limit of ``POST /api/evidence``, ``max_body_bytes`` that of every other route.
    The web console is served under ``/console`` with ``console``'s options
    (docs/console.md), unless not ``serve_console``.
    """
    metrics = ApiMetrics(registry)
    app = FastAPI(
        title="riskpipe API",
        version="1",
        description="Review cases, dead letters, the pipeline's status and evidence recording,"
        " per tenant, by role."
        " Every error is an RFC 9457 problem (application/problem+json).",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(_known_query)],
        middleware=[
            Middleware(Observed, metrics=metrics),
            Middleware(ProblemGuard),
            Middleware(
                BodyLimit,
                limit=max_body_bytes,
                policies={_evidence.PATH: _evidence.body_policy(max_evidence_bytes)},
                prefix_policies={"/console/": _forms(max_body_bytes)} if serve_console else {},
            ),
        ],
    )
    app.state.riskpipe = ApiContext(
        store=store, tokens=tokens, projection=projection, registry=registry, reader=reader
    )
    app.state.evidence_metrics = _evidence.EvidenceMetrics(registry)
    install_problem_handlers(app)
    app.add_exception_handler(EventStoreError, _store_error)
    for router in routers:
        app.include_router(router)
    app.router.routes.extend(health_routes(registry=registry, readiness=lambda: _readiness(store)))
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    if serve_console:
        # imported here: the console's pages import the API's routes, which import this module
        from riskpipe.console import ConsoleOptions, mount_console  # noqa: PLC0415

        mount_console(app, tokens, console or ConsoleOptions())
    return app


def _readiness(store: EventStore) -> tuple[bool, str]:
    """Ready while the connection to NATS is up."""
    if store.client.connected:
        return True, "ok"
    return False, "NATS connection down"
