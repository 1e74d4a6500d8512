"""Errors as ``application/problem+json`` (RFC 9457), whatever raised them.

Every error response of the API has the same shape: ``type``, ``title``,
``status``, ``detail`` and ``instance`` (the request's path), plus an
extension member where one helps (``errors`` for a request that does not
validate). ``type`` is ``about:blank`` where the status says it all, and a
``urn:riskpipe:problem:...`` name where a client may act on the kind of
problem (a refused replay). A detail never holds a token, a stack trace or
the text of an exception the API did not raise itself.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import structlog
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "ProblemError",
    "ProblemGuard",
    "install_problem_handlers",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"
_log = structlog.get_logger("riskpipe.api")


class FieldError(BaseModel):
    """One reason a request did not validate."""

    location: list[str | int]
    """Where: ``["body", "reason"]``, ``["query", "limit"]``, ``["path", "sequence"]``."""
    message: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 describes it; extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str
    """The request's path."""
    errors: list[FieldError] | None = None
    """For 422: every field that did not validate."""


class ProblemError(Exception):
    """An error the API answers with a problem of its own making."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extensions: Any,  # noqa: ANN401 - JSON members of the problem
    ) -> None:
        self.status = status
        self.detail = detail
        self.type = type_
        self.headers = dict(headers or {})
        self.extensions = extensions
        super().__init__(detail)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    instance: str,
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,  # noqa: ANN401 - JSON members of the problem
) -> Response:
    """A problem response: the RFC 9457 members, then ``extensions``."""
    body = {
        "type": type_,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": instance,
        **extensions,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for it
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    if exc.status_code == HTTPStatus.NOT_FOUND and detail == _title(exc.status_code):
        detail = f"no such route: {request.url.path}"
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed here" + (
            f" (allowed: {allowed})" if allowed else ""
        )
    return problem_response(request.url.path, exc.status_code, detail, headers=exc.headers)


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next((e.get("ctx") or {}).get("error") for e in errors)
        return problem_response(
            request.url.path, 400, f"the request body is not valid JSON: {reason or 'malformed'}"
        )
    fields = [
        {
            "location": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
            "message": str(e.get("msg", "invalid")),
            "type": str(e.get("type", "invalid")),
        }
        for e in errors
    ]  # never the input: it may be large, or a secret pasted in the wrong field
    where = ", ".join(".".join(str(p) for p in f["location"]) for f in fields)
    return problem_response(
        request.url.path, 422, f"the request does not validate: {where}", errors=fields
    )


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for it
    return problem_response(
        request.url.path,
        exc.status,
        exc.detail,
        type_=exc.type,
        headers=exc.headers,
        **exc.extensions,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer HTTP errors, validation errors and :class:`ProblemError` as problems."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ProblemError, _problem)


class ProblemGuard:
    """ASGI middleware: an exception nobody handled is a 500 problem, logged, never shown.

    Starlette's own last resort answers in plain text and raises the
    exception again; this answers the problem, logs the exception with its
    traceback (``api.unhandled``) and ends the request there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            _log.exception("api.unhandled", method=scope["method"], path=scope["path"])
            if started:  # too late for a problem: the client sees the response cut short
                raise
            response = problem_response(
                scope["path"], 500, "the request failed on the server; it has been logged"
            )
            await response(scope, receive, send)
