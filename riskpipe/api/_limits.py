"""Request bodies: bounded while they arrive, and JSON or nothing.

The body is read here, before any route sees it, and counted as it
arrives: a ``Content-Length`` above the limit is refused at once, and a body
that grows past the limit (chunked, or longer than its ``Content-Length``
said) is refused as soon as it does, without reading the rest. The route
then reads the body from memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from riskpipe.api._problems import problem_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<something>+json``, parameters aside."""
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class BodyLimit:
    """ASGI middleware: 413 past ``limit`` bytes of body, 415 for a body that is not JSON.

    Under ``form_prefixes`` (the web console's pages) an HTML form's body,
    ``application/x-www-form-urlencoded``, is accepted too.
    """

    def __init__(
        self, app: ASGIApp, limit: int = DEFAULT_MAX_BODY_BYTES, form_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.form_prefixes = form_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdecimal() and int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        kind = _header(scope, b"content-type")
        if body and not _is_json(kind) and not self._is_form(scope, kind):
            response = problem_response(
                scope["path"],
                415,
                "a request body must be JSON (Content-Type: application/json)",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _is_form(self, scope: Scope, content_type: str | None) -> bool:
        """A form's body, on a path where forms are posted."""
        kind = (content_type or "").split(";")[0].strip().lower()
        path: str = scope["path"]
        return kind == "application/x-www-form-urlencoded" and path.startswith(self.form_prefixes)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            scope["path"],
            413,
            f"the request body is larger than {self.limit} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits as the original would."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
