"""Inline subscriptions: messages handed to a plain function as the client parses them.

nats-py delivers each message of a callback subscription through a ``Msg``
object, a header dict, an asyncio queue, a task switch and a coroutine call:
several microseconds per message, and the larger part of a Python client's
cost on its hot paths (PubAcks, pulled deliveries, replayed messages). The
store's own inboxes need none of it: their handlers only record what arrived.

The transport (``_transport``) sits in front of the client's message
processing. Messages for the subscriptions registered with it go straight from
the protocol parser to a synchronous :data:`InlineHandler` as ``(subject,
reply, data, headers)`` with the header block still raw (or ``None``)
(:func:`parse_headers` reads it when wanted); every other subscription goes
through nats-py as usual. The subscriptions themselves are ordinary nats-py
ones, so they are restored after a reconnect and removed by
``unsubscribe``/``drain`` like any other. With a client the fast path was not
verified against, the transport hands the handler what an ordinary callback
subscription receives instead, the header block written back from its
headers.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["InlineHandler", "parse_headers"]

_STATUS_LINE = len(b"NATS/1.0")
_STATUS_LEN = 3


InlineHandler = Callable[[bytes, bytes, bytes, bytes | None], None]
"""Receives one message: subject, reply subject, payload, raw header block (or ``None``).

It runs inside the client's read loop: it must not block, and what it raises
is logged and dropped.
"""


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
