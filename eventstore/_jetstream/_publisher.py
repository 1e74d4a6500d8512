"""Pipelined JetStream publishing: many messages in flight, each awaited for its PubAck.

Every publish carries a reply subject under one wildcard inbox subscription,
so acknowledgements are matched to their futures without a round trip per
message; the inbox is an inline subscription (see ``_inline``), so an
acknowledgement costs a dict lookup and a future, not a task switch. A window
bounds how many are in flight; one reaper task fails the ones whose
acknowledgement is overdue.

Frames are written straight into the client's outgoing buffer and flushed once
per burst, instead of one ``nc.publish`` (header parsing, a flush request) per
message: that is where a Python publisher spends its time. This relies on two
attributes of the pinned nats-py client (``_pending``, ``_pending_data_size``);
when the connection is not up it falls back to ``nc.publish``, which buffers
during a reconnect exactly as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING, NamedTuple

import orjson

from eventstore._jetstream._errors import map_errors
from eventstore._jetstream._inline import InlineDispatch, parse_headers
from eventstore.errors import JetStreamAPIError, StoreTimeoutError, StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from nats.aio.client import Client
    from nats.aio.subscription import Subscription

__all__ = ["OutboundMessage", "PubAck", "Publisher"]

_NO_RESPONDERS = "503"
_FLUSH_EVERY = 256
_CRLF = b"\r\n"
AckFuture = asyncio.Future["PubAck | None"]


class PubAck(NamedTuple):
    """JetStream's answer to a stored (or deduplicated) message."""

    stream: str
    seq: int
    duplicate: bool = False
    batch: str | None = None


class OutboundMessage(NamedTuple):
    """A message to publish; header names and values are already checked by the caller."""

    subject: str
    payload: bytes
    headers: Mapping[str, str]


def _parse_ack(subject: str, data: bytes, headers: bytes | None) -> PubAck | Exception | None:
    if headers is not None and parse_headers(headers).get("Status") == _NO_RESPONDERS:
        return StoreUnavailableError(f"publish to {subject}: no stream is listening on it")
    if not data:
        return None  # an empty reply acknowledges a non-final atomic batch message
    resp = orjson.loads(data)
    if err := resp.get("error"):
        return JetStreamAPIError(
            f"publish to {subject}",
            int(err.get("code", 0)),
            int(err.get("err_code", 0)),
            str(err.get("description", "")),
        )
    return PubAck(
        resp["stream"],
        int(resp["seq"]),
        bool(resp.get("duplicate", False)),
        resp.get("batch"),
    )


def _frame(subject: str, reply: bytes, headers: Mapping[str, str], payload: bytes) -> bytes:
    if not headers:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply, len(payload), payload)
    if len(headers) == 1:  # the usual append: the message id alone
        ((key, value),) = headers.items()
        hdr = f"NATS/1.0\r\n{key}: {value}\r\n\r\n".encode()
    else:
        lines = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        hdr = f"NATS/1.0\r\n{lines}\r\n".encode()
    size = len(hdr)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply,
        size,
        size + len(payload),
        hdr,
        payload,
    )


class Publisher:
    """Publishes with a window of in-flight acknowledgements."""

    def __init__(
        self, nc: Client, inline: InlineDispatch, *, window: int = 4096, timeout: float = 5.0
    ) -> None:
        self._nc = nc
        self._inline = inline
        self._timeout = timeout
        self._window = window
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._tokens = itertools.count()
        # token -> (subject, future, deadline on the monotonic clock)
        self._pending: dict[bytes, tuple[str, AckFuture, float]] = {}
        self._prefix = b""
        self._sub: Subscription | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._flush_soon = False
        self._flushes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Subscribe the reply inbox and start the reaper; call once before publishing."""
        inbox = self._nc.new_inbox()
        self._prefix = f"{inbox}.".encode()
        with map_errors("subscribe publish-ack inbox"):
            self._sub = await self._inline.subscribe(f"{inbox}.*", self._on_reply)
        self._reaper = asyncio.create_task(self._reap(), name="riskpipe-puback-reaper")

    async def stop(self) -> None:
        """Fail what is still pending, stop the reaper and drop the inbox subscription."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for token in list(self._pending):
            self._fail(token, StoreUnavailableError("publish: publisher closed"))
        if self._sub is not None:
            with map_errors("unsubscribe publish-ack inbox"):
                await self._inline.unsubscribe(self._sub)

    async def publish(self, message: OutboundMessage) -> AckFuture:
        """Send one message; the future resolves with its PubAck or a store error.

        The frame is flushed together with whatever else is written in the same
        turn of the event loop (many concurrent single publishes, one flush).

        Raises:
            StoreUnavailableError: the client could not send it at all.
        """
        if self._in_flight >= self._window:
            await self._flush()
            await self._wait_for_room()
        token, fut = self._register(message.subject)
        reply = self._prefix + token
        if not self._buffer(message, reply):
            await self._write(message, reply)
        self._flush_later()
        return fut

    def publish_nowait(self, message: OutboundMessage) -> AckFuture | None:
        """:meth:`publish` if it can be done without waiting, else ``None`` (nothing sent).

        It cannot while the window of unacknowledged publishes is full or the
        client is not connected (then :meth:`publish` waits, or buffers the
        message in the client until it reconnects).
        """
        if self._in_flight >= self._window or not self._nc.is_connected:
            return None
        token, fut = self._register(message.subject)
        if not self._buffer(message, self._prefix + token):
            self._fail(token, StoreUnavailableError("publish: not sent"))
            fut.exception()  # retrieved here: the caller gets None, not this future
            return None
        self._flush_later()
        return fut

    async def publish_many(self, messages: Sequence[OutboundMessage]) -> list[AckFuture]:
        """Send messages in order, flushing once per burst; one future per message.

        Raises:
            StoreUnavailableError: the client could not send them at all.
        """
        futures: list[AckFuture] = []
        burst = 0
        for message in messages:
            if self._in_flight >= self._window:
                await self._flush()
                burst = 0
                await self._wait_for_room()
            token, fut = self._register(message.subject)
            futures.append(fut)
            reply = self._prefix + token
            if not self._buffer(message, reply):
                await self._write(message, reply)
            burst += 1
            if burst >= _FLUSH_EVERY:
                await self._flush()
                burst = 0
        await self._flush()
        # one turn of the event loop: the flusher writes the burst now and arrived
        # acknowledgements are read, while the caller prepares what comes next
        await asyncio.sleep(0)
        return futures

    async def send(self, message: OutboundMessage) -> None:
        """Send one message without asking for an acknowledgement.

        The frame is flushed with everything else written in the same turn of
        the event loop: many acks, one flush.
        """
        if not self._buffer(message, b""):
            await self._write(message, b"")
        self._flush_later()

    def send_nowait(self, message: OutboundMessage) -> bool:
        """:meth:`send` if it can be done without waiting; whether it was sent."""
        if not self._buffer(message, b""):
            return False
        self._flush_later()
        return True

    def _flush_later(self) -> None:
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_soon = False
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    def _register(self, subject: str) -> tuple[bytes, AckFuture]:
        token = b"%x" % next(self._tokens)
        fut: AckFuture = asyncio.get_running_loop().create_future()
        self._pending[token] = (subject, fut, time.monotonic() + self._timeout)
        self._in_flight += 1
        if self._in_flight >= self._window:
            self._room.clear()
        return token, fut

    def _buffer(self, message: OutboundMessage, reply: bytes) -> bool:
        """Write the frame into the client's buffer when connected (no coroutine per message)."""
        nc = self._nc
        if not nc.is_connected or nc.is_draining_pubs:
            return False
        frame = _frame(message.subject, reply, message.headers, message.payload)
        nc._pending.append(frame)  # noqa: SLF001 - see the module docstring
        nc._pending_data_size += len(frame)  # noqa: SLF001 - same
        return True

    async def _write(self, message: OutboundMessage, reply: bytes) -> None:
        """Publish through the client, which buffers it while reconnecting."""
        nc = self._nc
        try:
            with map_errors(f"publish to {message.subject}"):
                await nc.publish(
                    message.subject,
                    message.payload,
                    reply=reply.decode(),
                    headers=dict(message.headers),
                )
        except BaseException:
            if reply:
                self._fail(reply[len(self._prefix) :], StoreUnavailableError("publish: not sent"))
            raise

    async def _flush(self) -> None:
        if self._nc.is_connected and self._nc._pending_data_size:  # noqa: SLF001 - see the module docstring
            try:
                with map_errors("flush"):
                    await self._nc._flush_pending()  # noqa: SLF001 - same
            except StoreUnavailableError:
                pass  # the reconnect resends the buffer; acks or timeouts settle the futures

    async def _wait_for_room(self) -> None:
        await self._room.wait()

    def _settled(self, token: bytes) -> tuple[str, AckFuture] | None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return None
        self._in_flight -= 1
        if self._in_flight <= self._window // 2:
            self._room.set()  # resume at half the window: fewer, larger bursts
        return entry[0], entry[1]

    def _fail(self, token: bytes, exc: Exception) -> None:
        entry = self._settled(token)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(exc)

    async def _reap(self) -> None:
        period = max(self._timeout / 4, 0.05)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            overdue = [t for t, (_, _, deadline) in self._pending.items() if deadline <= now]
            for token in overdue:
                subject = self._pending[token][0]
                self._fail(
                    token,
                    StoreTimeoutError(f"publish to {subject}: no PubAck within {self._timeout}s"),
                )

    def _on_reply(self, subject: bytes, _reply: bytes, data: bytes, headers: bytes | None) -> None:
        entry = self._settled(subject[len(self._prefix) :])
        if entry is None or entry[1].done():
            return
        published, fut = entry
        result = _parse_ack(published, data, headers)
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)
