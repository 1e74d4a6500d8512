"""The web console: the review queue, cases, entities, dead letters, status and audit in a browser.

``riskpipe api`` serves it under ``/console`` beside the API (docs/console.md).
Pages are rendered on the server from Jinja2 templates; the few static
files (a stylesheet, one small script for keyboard moves) are served by the
app itself. People log in with their API token; the pages call the same
Python the API's routes are, with the same roles and tenants.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from analyzers import AnalyzerConfig
from riskpipe.console import _cases, _login, _ops
from riskpipe.console._session import COOKIE, Session, SessionKeeper, sign_session
from riskpipe.console._web import (
    CSP,
    HERE,
    PREFIX,
    ConsoleHeaders,
    ConsoleState,
    LoginRequiredError,
    PageError,
    render,
    session_of,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    from riskpipe.api._tokens import TokenTable

__all__ = [
    "COOKIE",
    "CSP",
    "PREFIX",
    "ConsoleOptions",
    "Session",
    "SessionKeeper",
    "mount_console",
    "sign_session",
]


@dataclass(frozen=True, slots=True)
class ConsoleOptions:
    """How the console runs: the key that signs sessions, and how long one lasts."""

    secret: bytes | None = None
    """``None``: a random key, so sessions end when the process does."""
    session_seconds: float = 8 * 3600
    thresholds: tuple[float, float, float] | None = None
    """Where medium, high and critical start on the chart (the analyzer's defaults if unset)."""


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)  # noqa: S101 - registered for PageError only
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    return render(request, "error.html", status=exc.status,
                  title=titles.get(exc.status, "Error"), message=exc.message)  # fmt: skip


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequiredError)  # noqa: S101 - registered for it only
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    back = f"&next={quote(target, safe='')}" if request.method == "GET" else ""
    return RedirectResponse(f"{PREFIX}/login?why={exc.why}{back}", status_code=303)


async def _to_console(_: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


async def _unknown(request: Request) -> Response:
    """Any other path under the console: its 404 page (with the menu, if logged in)."""
    with contextlib.suppress(LoginRequiredError):
        session_of(request)
    return await _page_error(request, PageError(404, "there is no such page"))


def mount_console(app: FastAPI, tokens: TokenTable, options: ConsoleOptions) -> None:
    """Serve the console on ``app`` under :data:`PREFIX`, and send ``/`` there."""
    thresholds = options.thresholds or AnalyzerConfig().thresholds.ascending()
    keeper = SessionKeeper(
        key=options.secret or secrets.token_bytes(32),
        tokens=tokens,
        ttl_seconds=options.session_seconds,
    )
    app.state.console = ConsoleState(keeper=keeper, thresholds=thresholds)
    for router in (_login.router, _cases.router, _ops.router):
        app.include_router(router)
    app.router.routes.append(
        Mount(f"{PREFIX}/static", app=StaticFiles(directory=HERE / "static"), name="static")
    )
    app.router.routes.append(Route("/", _to_console, include_in_schema=False))
    app.router.routes.append(Route(f"{PREFIX}/{{rest:path}}", _unknown, include_in_schema=False))
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(LoginRequiredError, _login_required)
    app.add_middleware(ConsoleHeaders)
