"""Pipelined JetStream publishing: many messages in flight, each awaited for its PubAck.

Every publish carries a reply subject under one wildcard inbox subscription,
so acknowledgements are matched to their futures without a round trip per
message; the inbox is an inline subscription (see ``_inline``), so an
acknowledgement costs a dict lookup and a future, not a task switch. A window
bounds how many are in flight; one reaper task fails the ones whose
acknowledgement is overdue.

Frames are written straight into the client's outgoing buffer and flushed once
per burst, instead of one ``nc.publish`` (header parsing, a flush request) per
message: that is where a Python publisher spends its time. How a frame is
written is the transport's business (``_transport``, the one module that
touches nats-py's internals); when the connection is not up, or the client is
not one the fast path was verified against, it goes through ``nc.publish``,
which buffers during a reconnect exactly as usual. No message over the
server's ``max_payload`` is ever written: its future fails with
:class:`~eventstore.errors.MessageTooLargeError` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING, NamedTuple

import orjson

from eventstore._jetstream._errors import map_errors
from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._transport import OutboundMessage
from eventstore.errors import (
    JetStreamAPIError,
    MessageTooLargeError,
    StoreTimeoutError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.subscription import Subscription

    from eventstore._jetstream._transport import Transport

__all__ = ["OutboundMessage", "PubAck", "Publisher"]

_NO_RESPONDERS = "503"
_FLUSH_EVERY = 256
AckFuture = asyncio.Future["PubAck | None"]


class PubAck(NamedTuple):
    """JetStream's answer to a stored (or deduplicated) message."""

    stream: str
    seq: int
    duplicate: bool = False
    batch: str | None = None


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


class Publisher:
    """Publishes with a window of in-flight acknowledgements."""

    def __init__(self, transport: Transport, *, window: int = 4096, timeout: float = 5.0) -> None:
        self._transport = transport
        self._nc = transport.nc
        # the transport's own method, bound once: no extra call per message
        self._buffer = transport.buffer
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
            self._sub = await self._transport.subscribe(f"{inbox}.*", self._on_reply)
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
                await self._transport.unsubscribe(self._sub)

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
        try:
            if not self._buffer(message, reply):
                await self._write(message, reply)
        except MessageTooLargeError as exc:
            self._fail(token, exc)  # never written: the future says why
            return fut
        self._flush_later()
        return fut

    def publish_nowait(self, message: OutboundMessage) -> AckFuture | None:
        """:meth:`publish` if it can be done without waiting, else ``None`` (nothing sent).

        It cannot while the window of unacknowledged publishes is full, the
        client is not connected (then :meth:`publish` waits, or buffers the
        message in the client until it reconnects), the transport cannot write
        without a coroutine, or the message is too large (:meth:`publish`
        says so).
        """
        if self._in_flight >= self._window or not self._nc.is_connected:
            return None
        token, fut = self._register(message.subject)
        try:
            sent = self._buffer(message, self._prefix + token)
        except MessageTooLargeError:
            sent = False
        if not sent:
            self._fail(token, StoreUnavailableError("publish: not sent"))
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
            try:
                if not self._buffer(message, reply):
                    await self._write(message, reply)
            except MessageTooLargeError as exc:
                self._fail(token, exc)  # never written: its future says why
                continue
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

        Raises:
            MessageTooLargeError: over the server's ``max_payload``; not sent.
            StoreUnavailableError: the client could not send it at all.
        """
        if not self._buffer(message, b""):
            await self._write(message, b"")
        self._flush_later()

    def send_nowait(self, message: OutboundMessage) -> bool:
        """:meth:`send` if it can be done without waiting; whether it was sent.

        Raises:
            MessageTooLargeError: over the server's ``max_payload``; not sent.
        """
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

    async def _write(self, message: OutboundMessage, reply: bytes) -> None:
        """Publish through the client, which buffers it while reconnecting."""
        try:
            with map_errors(f"publish to {message.subject}"):
                await self._transport.publish(message, reply)
        except MessageTooLargeError:
            raise  # the caller settles its future with it
        except BaseException:
            if reply:
                self._fail(reply[len(self._prefix) :], StoreUnavailableError("publish: not sent"))
            raise

    async def _flush(self) -> None:
        if self._transport.pending():
            try:
                with map_errors("flush"):
                    await self._transport.flush()
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
            # marked as retrieved: a caller that awaits it still gets it, and one
            # that went away (cancelled, or handed None) leaves no "Future
            # exception was never retrieved" behind
            entry[1].exception()

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
