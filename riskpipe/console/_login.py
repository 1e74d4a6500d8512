"""``/console/login`` and ``/console/logout``: a session from an API token, and its end."""

from __future__ import annotations

import secrets

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response  # noqa: TC002 - FastAPI reads the annotation

from riskpipe.api._roles import Permission
from riskpipe.console._session import COOKIE
from riskpipe.console._web import PREFIX, PageError, form, render, see_other, session_of, state_of

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_log = structlog.get_logger("riskpipe.console")
_NONCE = "riskpipe_console_login"
_MESSAGES = {
    "expired": "Your session has expired. Log in again.",
    "out": "You are logged out.",
    "missing": "Log in to continue.",
}


def _secure(request: Request) -> bool:
    """Whether the request came over TLS (directly, or as the proxy in front says)."""
    return request.url.scheme == "https"


def _next(target: str | None) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


@router.get("/login")
async def login_page(request: Request, why: str = "", next: str = "") -> Response:  # noqa: A002 - the query's name
    """The login form: an API token, as `riskpipe api add-token` made it."""
    nonce = request.cookies.get(_NONCE) or secrets.token_urlsafe(18)
    keeper = state_of(request).keeper
    response = render(
        request,
        "login.html",
        title="Log in",
        message=_MESSAGES.get(why, ""),
        error="",
        login_csrf=keeper.login_csrf(nonce),
        next=_next(next),
    )
    response.set_cookie(
        _NONCE, nonce, httponly=True, samesite="strict", secure=_secure(request), path=PREFIX
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the token; on success set the session cookie and go on, else show the form again."""
    keeper = state_of(request).keeper
    nonce = request.cookies.get(_NONCE, "")
    fields = await form(request, None, csrf=keeper.login_csrf(nonce) if nonce else "")
    made = keeper.login(fields.get("token", "").strip())
    if made is None:
        _log.warning(
            "console.login_refused", client=request.client.host if request.client else None
        )
        return render(
            request,
            "login.html",
            status=401,
            title="Log in",
            message="",
            error="That token is not valid.",
            login_csrf=keeper.login_csrf(nonce),
            next=_next(fields.get("next")),
        )
    session, cookie = made
    _log.info("console.login", name=session.principal.name, role=session.principal.role)
    response = see_other(_next(fields.get("next")))
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(keeper.ttl_seconds),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=PREFIX,
    )
    response.delete_cookie(_NONCE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session; the cookie is cleared too."""
    session = session_of(request)
    await form(request, session)
    state_of(request).keeper.logout(session)
    _log.info("console.logout", name=session.principal.name)
    response = see_other(f"{PREFIX}/login?why=out")
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


@router.get("/")
async def home(request: Request) -> Response:
    """The first page the role has: the queue, the dead letters, or the status."""
    principal = session_of(request).principal
    if principal.may(Permission.CASES_READ):
        return see_other(f"{PREFIX}/queue")
    if principal.may(Permission.DEAD_LETTERS_READ):
        return see_other(f"{PREFIX}/dead-letters")
    if principal.may(Permission.STATUS_READ) and principal.all_tenants:
        return see_other(f"{PREFIX}/status")
    raise PageError(403, f"your role ({principal.role}) has no page in the console")
