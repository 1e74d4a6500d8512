"""Request bodies: bounded while they arrive, and JSON or nothing.

The body is read here, before any route sees it, and counted as it
arrives: a ``Content-Length`` above the limit is refused at once, and a body
that grows past the limit (chunked, or longer than its ``Content-Length``
said) is refused as soon as it does, without reading the rest. The route
then reads the body from memory.

A route that takes larger bodies, or another media type beside JSON (the
evidence route takes NDJSON too), says so with a :class:`BodyPolicy` for its
path; a policy may also hold for every path under a prefix (the web
console's pages take HTML forms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from riskpipe.api._problems import problem_response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "BodyPolicy"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def media_type(content_type: str | None) -> str | None:
    """The media type of a ``Content-Type``, lower case, parameters aside."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str | None, also: frozenset[str] = frozenset()) -> bool:
    """``application/json``, ``application/<something>+json``, or one of ``also``."""
    media = media_type(content_type)
    if media is None:
        return False
    kind, _, subtype = media.partition("/")
    json = kind == "application" and (subtype == "json" or subtype.endswith("+json"))
    return json or media in also


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    """A route's own body limit, and the media types it takes beside JSON."""

    limit: int
    media_types: frozenset[str] = frozenset()


class BodyLimit:
    """ASGI middleware: 413 past ``limit`` bytes of body, 415 for a body that is not JSON.

    ``policies`` gives a path (exactly as requested) a limit and media types
    of its own; ``prefix_policies`` gives one to every path under a prefix
    (the exact path's first, then the longest prefix's).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = DEFAULT_MAX_BODY_BYTES,
        policies: Mapping[str, BodyPolicy] | None = None,
        prefix_policies: Mapping[str, BodyPolicy] | None = None,
    ) -> None:
        self.app = app
        self.default = BodyPolicy(limit)
        self.policies = dict(policies or {})
        self.prefixes = sorted((prefix_policies or {}).items(), key=lambda p: -len(p[0]))

    def policy(self, path: str) -> BodyPolicy:
        """The body policy of ``path``."""
        if (exact := self.policies.get(path)) is not None:
            return exact
        for prefix, policy in self.prefixes:
            if path.startswith(prefix):
                return policy
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy(scope["path"])
        limit = policy.limit
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdecimal() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not _is_json(_header(scope, b"content-type"), policy.media_types):
            also = "".join(f" or {media}" for media in sorted(policy.media_types))
            response = problem_response(
                scope["path"],
                415,
                f"a request body must be JSON (Content-Type: application/json){also}",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            scope["path"],
            413,
            f"the request body is larger than {limit} bytes",
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
