"""The transport boundary: the one module that reaches into nats-py's private internals.

The store's fast path writes protocol frames straight into the client's
outgoing buffer and receives the messages of its own inboxes straight from
the client's protocol parser (see ``_publisher`` and ``_inline`` for why).
That relies on internals of nats-py's ``Client`` that are not its public API:

- ``_pending`` (a list of byte strings) and ``_pending_data_size`` (an int):
  the outgoing buffer and its size, which the client's flusher writes out;
- ``_flush_pending()``: the coroutine that wakes the flusher;
- ``_max_payload``: the server's ``max_payload``, from its ``INFO`` (read on
  the hot path instead of the ``max_payload`` property: no call per message);
- ``_process_msg(sid, subject, reply, data, headers)``: the coroutine method
  the parser calls for every message, replaced on the client instance (and
  put back by :meth:`FastTransport.close`);
- ``Subscription._id``: a subscription's sid.

:func:`select_transport` checks them once, when a client is wrapped: the
nats-py version must be in :data:`VERIFIED` and each internal must be there,
of the expected kind. Otherwise the store uses :class:`Transport`, the
public API (``Client.publish``, callback subscriptions), which is slower but
depends on nothing private, and says so in one log line (``nats.fast_path_off``).

Both enforce the server's ``max_payload`` on every message before it is
written: the server closes a connection that sends a larger one, and nats-py
checks only the payload, not payload plus headers, and only in ``publish``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, cast

import structlog

from eventstore.errors import MessageTooLargeError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from eventstore._jetstream._inline import InlineHandler

__all__ = [
    "VERIFIED",
    "FastTransport",
    "HeaderBlock",
    "OutboundMessage",
    "Transport",
    "close_client",
    "fast_path_problem",
    "frame",
    "header_block",
    "select_transport",
]

_log = structlog.get_logger(__name__)

VERIFIED = ((2, 16), (2, 17))
"""nats-py versions the fast path was verified against: from the first up to the last, excluded."""


class OutboundMessage(NamedTuple):
    """A message to publish; header names and values are already checked by the caller."""

    subject: str
    payload: bytes
    headers: Mapping[str, str]


class HeaderBlock(dict[str, str]):
    """Headers sent as one exact ``NATS/1.0`` block, and read as the dict of its headers.

    For re-sending headers as they arrived: duplicate names, case, spacing
    and order, which a dict loses, are kept in ``block``. The fast path
    writes ``block`` byte for byte; nats-py's public API (a version the fast
    path was not verified against) sends the dict instead.
    """

    block: bytes

    def __init__(self, block: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        self.block = block


_PROCESS_PARAMS = ("sid", "subject", "reply", "data", "headers")
_Process = Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]


def header_block(headers: Mapping[str, str]) -> bytes:
    """The ``NATS/1.0`` block of ``headers`` as nats-py writes it (names checked by the caller).

    A :class:`HeaderBlock` is its own block.
    """
    if isinstance(headers, HeaderBlock):
        return headers.block
    if len(headers) == 1:  # the usual append: the message id alone
        ((key, value),) = headers.items()
        return f"NATS/1.0\r\n{key}: {value}\r\n\r\n".encode()
    lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    return f"NATS/1.0\r\n{lines}\r\n".encode()


def frame(
    subject: str, reply: bytes, headers: Mapping[str, str], payload: bytes, max_payload: int
) -> bytes:
    """The ``PUB``/``HPUB`` frame of one message, as ``Client.publish`` would write it.

    Raises:
        MessageTooLargeError: headers and payload together are over ``max_payload``.
    """
    if not headers:
        if len(payload) > max_payload:
            raise MessageTooLargeError(subject, len(payload), max_payload)
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply, len(payload), payload)
    hdr = header_block(headers)
    size = len(hdr)
    total = size + len(payload)
    if total > max_payload:
        raise MessageTooLargeError(subject, total, max_payload)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (subject.encode(), reply, size, total, hdr, payload)


def _version() -> tuple[int, int] | None:
    try:
        major, minor, *_ = importlib.metadata.version("nats-py").split(".")
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def fast_path_problem(nc: Client, version: tuple[int, int] | None = None) -> str | None:
    """Why the fast path cannot be used with ``nc``, or ``None`` when it can.

    ``version`` is nats-py's (major, minor), read from the installed package by default.
    """
    version = _version() if version is None else version
    low, high = VERIFIED
    if version is None or not low <= version < high:
        shown = "unknown" if version is None else ".".join(map(str, version))
        return (
            f"nats-py {shown} is outside the verified range"
            f" {low[0]}.{low[1]} to <{high[0]}.{high[1]}"
        )
    checks: list[tuple[str, bool]] = [
        ("_pending", isinstance(getattr(nc, "_pending", None), list)),
        ("_pending_data_size", type(getattr(nc, "_pending_data_size", None)) is int),
        ("_max_payload", type(getattr(nc, "_max_payload", None)) is int),
        ("_flush_pending", inspect.iscoroutinefunction(getattr(nc, "_flush_pending", None))),
        ("_process_msg", _is_process(getattr(nc, "_process_msg", None))),
        ("_subs", isinstance(getattr(nc, "_subs", None), dict)),
        ("stats", isinstance(getattr(nc, "stats", None), dict)),
    ]
    missing = [name for name, ok in checks if not ok]
    return f"the client lacks {', '.join(missing)} as verified" if missing else None


def _is_process(method: object) -> bool:
    if not inspect.iscoroutinefunction(method):
        return False
    params = tuple(inspect.signature(cast("Callable[..., object]", method)).parameters)
    return params == _PROCESS_PARAMS


async def close_client(nc: Client, *, lost: bool = False) -> None:
    """Close ``nc``; over a connection that is down, drop what it still buffers first.

    ``lost``: the caller knows the connection is unusable (a drain failed) even
    if the client still says it is connected; its buffer is dropped too.

    nats-py's ``close`` writes its buffer to the socket even when the
    connection is lost, and on Python 3.12+ asyncio's transport of a lost
    connection raises ``TypeError`` there, which cuts ``close`` short (its
    subscriptions, socket and callbacks are left as they are). Nothing in that
    buffer could reach the server anyway. ``_pending`` and
    ``_pending_data_size`` are only touched when they are what they should be.

    Raises:
        nats.errors.Error, OSError, TypeError: as ``Client.close`` (callers suppress them).
    """
    if (
        (lost or not nc.is_connected)
        and isinstance(getattr(nc, "_pending", None), list)
        and type(getattr(nc, "_pending_data_size", None)) is int
    ):
        nc._pending = []  # noqa: SLF001 - the boundary
        nc._pending_data_size = 0  # noqa: SLF001 - same
    await nc.close()


def select_transport(nc: Client, *, fast_path: bool = True) -> Transport:
    """The fast transport when ``fast_path`` and ``nc`` passes the checks, else the public one."""
    if not fast_path:
        return Transport(nc)
    problem = fast_path_problem(nc)
    if problem is not None:
        _log.warning("nats.fast_path_off", reason=problem)
        return Transport(nc)
    return FastTransport(nc)


class Transport:
    """Frames out and inline messages in through nats-py's public API only."""

    fast = False

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    def buffer(self, message: OutboundMessage, reply: bytes) -> bool:
        """Queue ``message`` without waiting; ``False`` when it must go through :meth:`publish`.

        The public API cannot queue without a coroutine: always ``False``.
        """
        del message, reply
        return False

    async def publish(self, message: OutboundMessage, reply: bytes) -> None:
        """Publish through ``Client.publish``, which buffers it while reconnecting.

        Raises:
            MessageTooLargeError: over the server's ``max_payload``.
            nats.errors.Error: as ``Client.publish`` (callers map it).
        """
        subject, payload, headers = message
        size = len(payload) + (len(header_block(headers)) if headers else 0)
        if size > self.nc.max_payload:
            raise MessageTooLargeError(subject, size, self.nc.max_payload)
        await self.nc.publish(
            subject, payload, reply=reply.decode(), headers=dict(headers) if headers else None
        )

    def pending(self) -> bool:
        """Whether frames wait in the buffer for :meth:`flush`."""
        return False

    async def flush(self) -> None:
        """Write out what :meth:`buffer` queued (``Client.publish`` flushes by itself)."""

    async def subscribe(self, subject: str, handler: InlineHandler) -> Subscription:
        """Subscribe ``subject``, handing each message to ``handler``.

        Raises:
            nats.errors.Error: as ``Client.subscribe`` (callers map it).
        """

        async def deliver(msg: Msg) -> None:
            try:
                handler(msg.subject.encode(), msg.reply.encode(), msg.data, _block(msg.headers))
            except Exception:  # noqa: BLE001 - as the fast path: logged, the next one goes on
                _log.exception("nats.inline_handler_failed", subject=msg.subject)

        return await self.nc.subscribe(subject, cb=deliver)

    async def unsubscribe(self, sub: Subscription) -> None:
        """Unsubscribe ``sub``.

        Raises:
            nats.errors.Error: as ``Subscription.unsubscribe`` (callers map it).
        """
        await sub.unsubscribe()

    def close(self) -> None:
        """Leave the client as it was found (nothing to undo here)."""


def _block(headers: dict[str, str] | None) -> bytes | None:
    """A header block that ``parse_headers`` reads back as ``headers`` (status line included)."""
    if not headers:
        return None
    rest = dict(headers)
    status = rest.pop("Status", "")
    description = rest.pop("Description", "")
    first = " ".join(part for part in ("NATS/1.0", status, description) if part)
    lines = "".join(f"{k}: {v}\r\n" for k, v in rest.items())
    return f"{first}\r\n{lines}\r\n".encode()


class FastTransport(Transport):
    """Frames written into the client's buffer; inline messages taken from its parser.

    Build it only for a client :func:`fast_path_problem` accepts.
    """

    fast = True

    def __init__(self, nc: Client) -> None:
        super().__init__(nc)
        self._handlers: dict[int, InlineHandler] = {}
        # nats-py annotates the header block as bytes; the parser passes None without one
        self._fallback = cast("_Process", nc._process_msg)  # noqa: SLF001 - the boundary
        self._patched = "_process_msg" in vars(nc)  # already replaced on this instance?
        nc._process_msg = self._process  # type: ignore[method-assign]  # noqa: SLF001 - same

    def buffer(self, message: OutboundMessage, reply: bytes) -> bool:
        """Write the frame into the client's buffer when connected (no coroutine per message).

        Raises:
            MessageTooLargeError: over the server's ``max_payload``.
        """
        nc = self.nc
        if not nc.is_connected or nc.is_draining_pubs:
            return False
        subject, payload, headers = message
        data = frame(subject, reply, headers, payload, nc._max_payload)  # noqa: SLF001 - the boundary
        nc._pending.append(data)  # noqa: SLF001 - same
        nc._pending_data_size += len(data)  # noqa: SLF001 - same
        return True

    def pending(self) -> bool:
        """Whether frames wait in the client's buffer (and it is connected to flush them)."""
        return bool(self.nc.is_connected and self.nc._pending_data_size)  # noqa: SLF001 - the boundary

    async def flush(self) -> None:
        """Wake the client's flusher.

        Raises:
            nats.errors.Error: as the client's flush (callers map it).
        """
        await self.nc._flush_pending()  # noqa: SLF001 - the boundary

    async def subscribe(self, subject: str, handler: InlineHandler) -> Subscription:
        """Subscribe ``subject`` with ``handler`` receiving its messages from the parser.

        Raises:
            nats.errors.Error: as ``Client.subscribe`` (callers map it).
        """
        # without a callback nats-py only prepares an iterator, which is never used
        sub = await self.nc.subscribe(subject)
        self._handlers[sub._id] = handler  # noqa: SLF001 - the subscription's sid
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop routing ``sub`` and unsubscribe it.

        Raises:
            nats.errors.Error: as ``Subscription.unsubscribe`` (callers map it).
        """
        self._handlers.pop(sub._id, None)  # noqa: SLF001 - the subscription's sid
        await sub.unsubscribe()

    def close(self) -> None:
        """Put the client's message processing back as it was found.

        When something replaced it again since, that stays in place and this
        transport only passes every message on from then on.
        """
        self._handlers.clear()
        nc = self.nc
        if vars(nc).get("_process_msg") != self._process:
            return
        if self._patched:
            nc._process_msg = self._fallback  # type: ignore[method-assign,assignment]  # noqa: SLF001 - the boundary
        else:
            del nc._process_msg  # noqa: SLF001 - the class's own method shows through again

    async def _process(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._handlers.get(sid)
        if handler is None:
            await self._fallback(sid, subject, reply, data, headers)
            return
        stats = self.nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:  # noqa: BLE001 - a handler bug must not break the read loop
            _log.exception("nats.inline_handler_failed", subject=subject.decode(errors="replace"))
