"""What every console page shares: templates, the session, forms with CSRF, errors, headers.

Templates are Jinja2 with autoescaping on for every file, so anything
from the log (evidence attributes and descriptions are written by
producers, and may hold markup) is text on the page. No template marks a
value safe. Every response under ``/console`` carries a Content-Security-
Policy that allows scripts, styles and images from the app alone, no
inline script or style, so even markup that got through would not run.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.responses import HTMLResponse, RedirectResponse

from riskpipe.api._roles import Permission
from riskpipe.console._session import COOKIE, Session, SessionKeeper

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from riskpipe.api._auth import ApiContext

__all__ = [
    "PREFIX",
    "ConsoleHeaders",
    "ConsoleState",
    "LoginRequiredError",
    "PageError",
    "form",
    "render",
    "session_of",
]

PREFIX = "/console"
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none';"
    " form-action 'self'"
)
"""The console's Content-Security-Policy: nothing inline, nothing from elsewhere."""
_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


@dataclass
class ConsoleState:
    """The console's own state in one API process."""

    keeper: SessionKeeper
    thresholds: tuple[float, float, float]
    env: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
        )
    )


class PageError(Exception):
    """A page answered with an error page: 403, 404, 409, ..."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class LoginRequiredError(Exception):
    """No usable session: the person is sent to log in (``why``: ``missing`` or ``expired``)."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


def state_of(request: Request) -> ConsoleState:
    """The app's :class:`ConsoleState`."""
    state: ConsoleState = request.app.state.console
    return state


def api_context(request: Request) -> ApiContext:
    """The API's context: the store, tokens, projection and read model."""
    ctx: ApiContext = request.app.state.riskpipe
    return ctx


def session_of(request: Request, permission: Permission | None = None) -> Session:
    """The request's session, whose role holds ``permission`` if one is named.

    Raises:
        LoginRequiredError: no session, or an expired one.
        PageError: 403, the role lacks ``permission``.
    """
    found = state_of(request).keeper.check(request.cookies.get(COOKIE))
    if isinstance(found, str):
        raise LoginRequiredError(found)
    request.state.console_session = found
    if permission is not None and not found.principal.may(permission):
        raise PageError(403, f"your role ({found.principal.role}) cannot open this page")
    return found


async def form(
    request: Request, session: Session | None, *, csrf: str | None = None
) -> dict[str, str]:
    """The posted form's fields (first value of each), once its CSRF token is checked.

    The token must be ``session``'s, or ``csrf`` when given (the login form's).

    Raises:
        PageError: 400 not a URL-encoded form; 403 the CSRF token is missing or wrong.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(400, "the form was not sent as a form")
    body = (await request.body()).decode("utf-8", "replace")
    fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    expected = csrf if csrf is not None else (session.csrf if session else "")
    if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
        raise PageError(403, "the form has expired or did not come from this console; reload it")
    return fields


def _age(when: datetime | None) -> str:
    """How long ago, in the largest unit that fits: ``3 d``, ``5 h``, ``12 min``, ``40 s``."""
    if when is None:
        return ""
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(
    request: Request, template: str, *, status: int = 200, title: str, **values: object
) -> HTMLResponse:
    """``template`` rendered with ``values``, the session's menu and its CSRF token."""
    state = state_of(request)
    session: Session | None = getattr(request.state, "console_session", None)
    principal = session.principal if session else None
    menu = []
    if principal is not None:
        if principal.may(Permission.CASES_READ):
            menu += [("queue", "Review queue"), ("entities", "Entities"), ("audit", "Audit")]
        if principal.may(Permission.DEAD_LETTERS_READ):
            menu.append(("dead-letters", "Dead letters"))
        if principal.may(Permission.STATUS_READ) and principal.all_tenants:
            menu.append(("status", "Status"))
    html = state.env.get_template(template).render(
        title=title,
        prefix=PREFIX,
        session=session,
        principal=principal,
        csrf=session.csrf if session else "",
        menu=menu,
        age=_age,
        when=_when,
        quote=lambda s: quote(str(s), safe=""),
        **values,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def see_other(url: str) -> RedirectResponse:
    """A 303 to ``url`` (after a form: the browser GETs it)."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _problem_page(env: jinja2.Environment, problem: bytes, status: int) -> bytes:
    """The console's error page for an API problem (``application/problem+json``)."""
    try:
        doc = json.loads(problem)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = str(doc.get("title") or phrase)
    message = str(doc.get("detail") or title)
    html = env.get_template("error.html").render(
        title=title, prefix=PREFIX, session=None, principal=None, csrf="", menu=[],
        message=message,
    )  # fmt: skip
    return html.encode()


class ConsoleHeaders:
    """Adds the console's security headers to every response under :data:`PREFIX`.

    An API problem answered there (a body over the limit, the store out of
    reach, a method the path does not take, ...) becomes the console's error
    page with the same status: a browser shows a page, not JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        body: list[bytes] = []

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *_HEADERS]}
                kind = dict(kept).get(b"content-type", b"")
                if kind.startswith(b"application/problem+json"):
                    held.update(message)  # sent with the page, once the problem is read
                    return
            elif message["type"] == "http.response.body" and held:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await self._page(scope, held, b"".join(body), send)
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _page(scope: Scope, start: Message, problem: bytes, send: Send) -> None:
        state: ConsoleState = scope["app"].state.console
        page = _problem_page(state.env, problem, start["status"])
        kind = b"text/html; charset=utf-8"
        replaced = {b"content-type", b"content-length", b"cache-control"}
        headers = [(k, v) for k, v in start["headers"] if k.lower() not in replaced]
        headers += [(b"content-type", kind), (b"content-length", str(len(page)).encode()),
                    (b"cache-control", b"no-store")]  # fmt: skip
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": page, "more_body": False})
