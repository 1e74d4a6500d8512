"""Durable pull consumers with explicit acknowledgement, driven by raw pull requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from eventstore._jetstream._acks import ack_metadata
from eventstore._jetstream._errors import map_errors
from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._publisher import OutboundMessage
from eventstore.errors import (
    ConsumerDriftError,
    EventStoreError,
    JetStreamAPIError,
    NotProvisionedError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from nats.aio.subscription import Subscription

    from eventstore._jetstream._client import JetStreamClient

__all__ = ["ConsumerSettings", "Delivery", "DurableConsumer"]

_NS = 1_000_000_000
_ACK = b"+ACK"
_TERM = b"+TERM"
_WPI = b"+WPI"
_NO_RESPONDERS = "503"
# no new pull request within this long of the last one while waiting (a server that
# refuses requests at once, e.g. at max ack pending, must not be asked in a loop)
_REPULL_AFTER = 0.1
# a message as the inline subscription hands it over: subject, reply, data, raw headers
_Arrived = tuple[bytes, bytes, bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a durable consumer delivers: ack wait, delivery cap, backoff, window."""

    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 2000
    filter_subject: str | None = None
    start_seq: int | None = None
    backoff: tuple[float, ...] = ()

    def to_config(self, name: str) -> dict[str, Any]:
        """The JetStream consumer config."""
        config: dict[str, Any] = {
            "durable_name": name,
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait * _NS),
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
            "max_waiting": 16,
            "deliver_policy": "all",
        }
        if self.filter_subject:
            config["filter_subject"] = self.filter_subject
        if self.start_seq:
            config["deliver_policy"] = "by_start_sequence"
            config["opt_start_seq"] = self.start_seq
        if self.backoff:
            config["backoff"] = [int(b * _NS) for b in self.backoff]
        return config

    def drift(self, found: dict[str, Any]) -> dict[str, tuple[object, object]]:
        """What in a consumer's ``found`` config decides delivery differently from these.

        Tunables (ack wait, pending window) are not compared: they may change
        between runs. The start position is the server's to keep.
        """
        want: dict[str, object] = {
            "filter_subject": self.filter_subject or None,
            "filter_subjects": None,
            "headers_only": False,
            "ack_policy": "explicit",
            "max_deliver": self.max_deliver,
            "rate_limit_bps": 0,
        }
        have: dict[str, object] = {
            "filter_subject": found.get("filter_subject") or None,
            "filter_subjects": found.get("filter_subjects") or None,
            "headers_only": bool(found.get("headers_only")),
            "ack_policy": found.get("ack_policy"),
            "max_deliver": found.get("max_deliver"),
            "rate_limit_bps": found.get("rate_limit_bps") or 0,
        }
        return {key: (have[key], value) for key, value in want.items() if have[key] != value}


@dataclass(slots=True)
class Delivery:
    """One delivered message, with what the server says about its delivery."""

    subject: str
    data: bytes
    headers: dict[str, str]
    stream: str
    stream_seq: int
    consumer_seq: int
    num_delivered: int
    num_pending: int
    stored_at: datetime
    reply: str
    header_block: bytes | None = None
    """The headers as they arrived, the raw ``NATS/1.0`` block (``headers`` is its parsed view)."""


def _delivery(
    subject: bytes, reply: bytes, data: bytes, headers: dict[str, str], raw: bytes | None
) -> Delivery:
    ack = reply.decode()
    meta = ack_metadata(ack)
    return Delivery(
        subject=subject.decode(),
        data=data,
        headers=headers,
        stream=meta.stream,
        stream_seq=meta.stream_seq,
        consumer_seq=meta.consumer_seq,
        num_delivered=meta.num_delivered,
        num_pending=meta.num_pending,
        stored_at=meta.stored_at,
        reply=ack,
        header_block=raw,
    )


class DurableConsumer:
    """A durable pull consumer: fetch batches, then ack, nak, term or extend each delivery."""

    def __init__(self, js: JetStreamClient, stream: str, name: str) -> None:
        self.js = js
        self.stream = stream
        self.name = name
        self._inbox = js.nc.new_inbox()
        self._sub: Subscription | None = None
        self._received: deque[_Arrived] = deque()
        self._arrived = asyncio.Event()
        self._requested = 0  # messages asked for by pull requests and not yet delivered
        self._requests_end = 0.0  # when the latest pull request will have expired (loop time)
        self._pulled_at = 0.0

    async def ensure(self, settings: ConsumerSettings) -> dict[str, Any]:
        """Create the consumer if missing (with ``settings``); return its info.

        Raises:
            ConsumerDriftError: it exists, and delivers differently from ``settings``.
        """
        try:
            return await self.verify(settings)
        except NotProvisionedError:
            body = {"stream_name": self.stream, "config": settings.to_config(self.name)}
            return await self.js.api(f"CONSUMER.CREATE.{self.stream}.{self.name}", body)

    async def verify(self, settings: ConsumerSettings) -> dict[str, Any]:
        """The consumer's info, once it is known to deliver as ``settings`` say.

        Raises:
            NotProvisionedError: the consumer does not exist.
            ConsumerDriftError: it delivers differently (see :meth:`ConsumerSettings.drift`).
        """
        info = await self.info()
        if differences := settings.drift(info.get("config", {})):
            raise ConsumerDriftError(self.stream, self.name, differences)
        return info

    async def info(self) -> dict[str, Any]:
        """The consumer's info (pending, ack pending, redelivered, ack floor).

        Raises:
            NotProvisionedError: the consumer does not exist.
        """
        return await self.js.api(f"CONSUMER.INFO.{self.stream}.{self.name}")

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to ``batch`` deliveries, waiting at most ``timeout`` seconds for the first.

        Pull requests are kept topped up rather than issued one per call: a new
        one (for ``batch`` messages, expiring after ``timeout``) goes out
        whenever fewer than half a batch is still requested, so the server is
        already sending the next messages while the caller handles these. It
        returns as soon as something has arrived, without waiting for a full
        batch: a quiet stream costs latency nowhere.

        Raises:
            TransientStoreError: not connected, or the server did not answer.
            NotProvisionedError: the consumer was deleted.
        """
        loop = asyncio.get_running_loop()
        if self._sub is None:
            with map_errors(f"subscribe {self.name}"):
                self._sub = await self.js.transport.subscribe(self._inbox, self._on_message)
        if loop.time() >= self._requests_end:
            self._requested = 0  # every request has expired (its 408 may have been lost)
        if self._requested <= batch // 2:
            await self._pull(batch, timeout)
        out: list[Delivery] = []
        deadline = loop.time() + timeout
        while True:
            self._take_arrived(batch, out)
            if out or loop.time() >= deadline:
                return out
            if self._requested <= batch // 2 and loop.time() - self._pulled_at >= _REPULL_AFTER:
                await self._pull(batch, timeout)  # a request ended while waiting: top up
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._arrived.wait()

    async def _pull(self, batch: int, timeout: float) -> None:
        expires = max(timeout - 0.05, 0.01)
        request = orjson.dumps({"batch": batch, "expires": int(expires * _NS)})
        with map_errors(f"fetch from {self.name}"):
            await self.js.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}", request, reply=self._inbox
            )
        self._requested += batch
        self._pulled_at = asyncio.get_running_loop().time()
        # a margin for the 408 that ends the request to arrive
        self._requests_end = asyncio.get_running_loop().time() + expires + 1.0

    def _on_message(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self._received.append((subject, reply, data, headers))
        self._arrived.set()

    def _take_arrived(self, batch: int, out: list[Delivery]) -> None:
        """Move arrived deliveries to ``out``, reading status messages on the way."""
        while self._received and len(out) < batch:
            subject, reply, data, raw = self._received.popleft()
            headers = parse_headers(raw)
            status = headers.get("Status")
            if status is None:
                self._requested = max(0, self._requested - 1)
                out.append(_delivery(subject, reply, data, headers, raw))
            else:
                self._status(status, headers)

    def _status(self, status: str, headers: dict[str, str]) -> None:
        """A status message: a heartbeat, or the end of (part of) a pull request."""
        if status == "100":
            return  # heartbeat
        if status == "409" and "Consumer Deleted" in headers.get("Description", ""):
            self._requested = 0
            raise NotProvisionedError(f"consumer {self.name} was deleted")
        if status in ("404", "408", "409"):
            # no messages, request expired, or e.g. max ack pending: what that request
            # still had outstanding is no longer coming
            unfilled = headers.get("Nats-Pending-Messages")
            self._requested = (
                max(0, self._requested - int(unfilled)) if unfilled and unfilled.isdigit() else 0
            )
            return
        if status == _NO_RESPONDERS:
            # nobody leads the consumer right now (a clustered consumer's leader
            # went away and its peers are electing another): transient
            self._requested = 0
            raise StoreUnavailableError(
                f"fetch from {self.name}: the consumer has no leader (an election in progress?)"
            )
        raise JetStreamAPIError(f"fetch from {self.name}", int(status), 0, "")

    async def close(self) -> None:
        """Release deliveries that arrived but were never fetched; drop the inbox subscription."""
        unfetched: list[Delivery] = []
        with contextlib.suppress(EventStoreError):
            self._take_arrived(len(self._received), unfetched)
        for delivery in unfetched:
            with contextlib.suppress(EventStoreError):
                await self.nak(delivery, 0.0)
        self._requested = 0
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                with map_errors(f"unsubscribe {self.name}"):
                    await self.js.transport.unsubscribe(sub)
            except EventStoreError:
                pass  # the connection is going away anyway

    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge: the delivery's effects are committed."""
        await self._reply(delivery, _ACK)

    def ack_nowait(self, delivery: Delivery) -> bool:
        """:meth:`ack` if it can be sent without waiting (connected); whether it was."""
        return self.js.publisher.send_nowait(OutboundMessage(delivery.reply, _ACK, {}))

    async def nak(self, delivery: Delivery, delay: float) -> None:
        """Ask for redelivery after ``delay`` seconds (never a bare nak: no hot loops)."""
        await self._reply(delivery, b"-NAK " + orjson.dumps({"delay": int(delay * _NS)}))

    async def term(self, delivery: Delivery) -> None:
        """Never redeliver this message."""
        await self._reply(delivery, _TERM)

    async def in_progress(self, delivery: Delivery) -> None:
        """Reset the ack timer: still working on it."""
        await self._reply(delivery, _WPI)

    async def _reply(self, delivery: Delivery, body: bytes) -> None:
        # through the publisher's frame writer: one buffered frame, no ack awaited
        await self.js.publisher.send(OutboundMessage(delivery.reply, body, {}))
