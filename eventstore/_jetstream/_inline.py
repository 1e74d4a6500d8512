"""Inline subscriptions: messages handed to a plain function as the client parses them.

nats-py delivers each message of a callback subscription through a ``Msg``
object, a header dict, an asyncio queue, a task switch and a coroutine call:
several microseconds per message, and the larger part of a Python client's
cost on its hot paths (PubAcks, pulled deliveries, replayed messages). The
store's own inboxes need none of it: their handlers only record what arrived.

:class:`InlineDispatch` sits in front of the client's message processing.
Messages for the subscriptions registered with it go straight from the
protocol parser to a synchronous handler as ``(subject, reply, data,
headers)`` with the header block still raw (or ``None``) (:func:`parse_headers` reads it
when wanted); every other subscription goes through nats-py as usual. The
subscriptions themselves are ordinary nats-py ones, so they are restored after
a reconnect and removed by ``unsubscribe``/``drain`` like any other.

This relies on one attribute of the pinned nats-py client: the parser calls
``client._process_msg(sid, subject, reply, data, headers)`` for every message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import structlog

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

__all__ = ["InlineDispatch", "InlineHandler", "parse_headers"]

_log = structlog.get_logger(__name__)
_STATUS_LINE = len(b"NATS/1.0")
_STATUS_LEN = 3


InlineHandler = Callable[[bytes, bytes, bytes, bytes | None], None]
"""Receives one message: subject, reply subject, payload, raw header block (or ``None``).

It runs inside the client's read loop: it must not block, and what it raises
is logged and dropped.
"""
_Process = Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]


class InlineDispatch:
    """Routes the messages of registered subscriptions to inline handlers."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._handlers: dict[int, InlineHandler] = {}
        # nats-py annotates the header block as bytes; the parser passes None without one
        self._fallback = cast("_Process", nc._process_msg)  # noqa: SLF001 - see the module docstring
        nc._process_msg = self._process  # type: ignore[method-assign]  # noqa: SLF001 - same

    async def subscribe(self, subject: str, handler: InlineHandler) -> Subscription:
        """Subscribe ``subject`` with ``handler`` receiving its messages inline.

        Raises:
            nats.errors.Error: as ``Client.subscribe`` (callers map it).
        """
        # without a callback nats-py only prepares an iterator, which is never used
        sub = await self._nc.subscribe(subject)
        self._handlers[sub._id] = handler  # noqa: SLF001 - the subscription's sid
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop routing ``sub`` and unsubscribe it.

        Raises:
            nats.errors.Error: as ``Subscription.unsubscribe`` (callers map it).
        """
        self._handlers.pop(sub._id, None)  # noqa: SLF001 - the subscription's sid
        await sub.unsubscribe()

    async def _process(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._handlers.get(sid)
        if handler is None:
            await self._fallback(sid, subject, reply, data, headers)
            return
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:  # noqa: BLE001 - a handler bug must not break the read loop
            _log.exception("nats.inline_handler_failed", subject=subject.decode(errors="replace"))


def parse_headers(raw: bytes | None) -> dict[str, str]:
    """The headers of a raw ``NATS/1.0`` block, as nats-py would give them.

    An inline status (``NATS/1.0 503``, ``NATS/1.0 404 No Messages``) becomes
    ``Status`` and ``Description`` entries. Names that are not ASCII tokens are
    skipped; values are UTF-8, undecodable bytes replaced.
    """
    if not raw:
        return {}
    first, *lines = raw.decode("utf-8", "replace").split("\r\n")
    out: dict[str, str] = {}
    status_line = first[_STATUS_LINE:].strip()
    if status_line:
        status, _, description = status_line.partition(" ")
        if status.isdigit() and len(status) == _STATUS_LEN:
            out["Status"] = status
        if description:
            out["Description"] = description.strip()
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and (key := name.strip()) and key.isascii() and len(key.split()) == 1:
            out[key] = value.strip()
    return out
