"""Reading a stream in order with a short-lived pull consumer (no acks, no durable state).

The reader keeps two pull requests outstanding, so the server is already
sending the next batch while the caller works through the current one, and it
receives through a subscription callback that only appends to a deque: no task
or timer per message, a timer only when it has to wait. ``read_batches`` hands
over everything that has arrived at once, for callers that would otherwise
pay for one generator step per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from typing import TYPE_CHECKING

import orjson

from eventstore._jetstream._acks import ack_metadata
from eventstore._jetstream._client import RawMessage
from eventstore._jetstream._errors import map_errors
from eventstore._jetstream._inline import parse_headers
from eventstore.errors import (
    EventStoreError,
    JetStreamAPIError,
    StoreTimeoutError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from nats.aio.subscription import Subscription

    from eventstore._jetstream._client import JetStreamClient

__all__ = ["READER_PREFIX", "read_batches", "read_range"]

READER_PREFIX = "rd_"
"""How a reader's consumer name starts (``rd_`` and 16 hex digits)."""
_INACTIVE_NS = 60 * 1_000_000_000
_OUTSTANDING = 2
_CATCH_UP_PAUSE = 0.05
"""How long to wait before asking again a replica that is catching up with the stream."""
_HEARTBEAT = "100"
_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"
_UNAVAILABLE = "503"
_CONFLICT = "409"
_GONE = ("consumer deleted", "consumer is deleted")
"""A pending pull's answer when its consumer is removed (moved, or deleted under it)."""


async def _create_consumer(
    js: JetStreamClient, stream: str, filter_subject: str | None, start_seq: int
) -> str:
    """Create a reader's consumer under a fresh random name, named in the request subject.

    The name goes in the subject (``CONSUMER.CREATE.<stream>.<name>``), never
    only in the body: the server takes a named create's name from the
    subject and refuses a body whose ``durable_name`` differs, so the deployment
    can deny the bare ``CONSUMER.CREATE.<stream>``, where the body alone names
    the consumer and could name, and so redefine, the worker's. The consumer is
    still ephemeral in effect: not durable, in memory, and gone
    ``inactive_threshold`` after an abandoned reader stops pulling.
    """
    name = f"{READER_PREFIX}{secrets.token_hex(8)}"
    config: dict[str, object] = {
        "name": name,
        "ack_policy": "none",
        "deliver_policy": "by_start_sequence",
        "opt_start_seq": max(start_seq, 1),
        "mem_storage": True,
        "num_replicas": 1,
        "inactive_threshold": _INACTIVE_NS,
        "max_waiting": 4,
    }
    if filter_subject:
        config["filter_subject"] = filter_subject
    resp = await js.api(
        f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": config}
    )
    return str(resp["name"])


async def read_range(  # noqa: PLR0913 - keyword-only range options
    js: JetStreamClient,
    stream: str,
    *,
    filter_subject: str | None,
    start_seq: int,
    end_seq: int,
    batch: int = 1024,
) -> AsyncGenerator[RawMessage, None]:
    """Yield the messages of ``stream`` from ``start_seq`` up to ``end_seq`` inclusive, in order.

    The ephemeral consumer is deleted when the iteration ends, also when the
    caller stops early (close the iterator, e.g. with ``contextlib.aclosing``).

    Raises:
        TransientStoreError: the server stopped answering.
        EventStoreError: the consumer could not be created or a delivery was lost.
    """
    batches = read_batches(
        js, stream, filter_subject=filter_subject, start_seq=start_seq, end_seq=end_seq, batch=batch
    )
    async with contextlib.aclosing(batches):
        async for arrived in batches:
            for raw in arrived:
                yield raw


async def read_batches(  # noqa: PLR0913 - keyword-only range options
    js: JetStreamClient,
    stream: str,
    *,
    filter_subject: str | None,
    start_seq: int,
    end_seq: int,
    batch: int = 1024,
) -> AsyncGenerator[list[RawMessage], None]:
    """Like :func:`read_range`, but yield the messages in lists, as many as have arrived.

    Raises:
        TransientStoreError: the server stopped answering.
        EventStoreError: the consumer could not be created or a delivery was lost.
    """
    if end_seq < start_seq:
        return
    name = await _create_consumer(js, stream, filter_subject, start_seq)
    reader = _RangeReader(
        js, stream, name, (start_seq, end_seq), batch, filter_subject=filter_subject
    )
    try:
        await reader.open()
        async for arrived in reader.batches():
            yield arrived
    finally:
        await reader.close()


class _RangeReader:
    """Pulls ``no_wait`` batches, two at a time, until ``end_seq`` or nothing is pending."""

    def __init__(  # noqa: PLR0913 - the range and how to pull it
        self,
        js: JetStreamClient,
        stream: str,
        name: str,
        seqs: tuple[int, int],
        batch: int,
        *,
        filter_subject: str | None,
    ) -> None:
        self.js, self.stream, self.name = js, stream, name
        self.last_seq, self.end_seq = seqs[0] - 1, seqs[1]  # last delivered, last wanted
        self.filter = filter_subject
        self.catch_up_deadline: float | None = None
        self.what = f"read {stream}"
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"
        self.request = orjson.dumps({"batch": batch, "no_wait": True})
        self.batch = batch
        self.inbox = js.nc.new_inbox()
        self.expected_cseq = 1
        self.sub: Subscription | None = None
        self.arrived: deque[tuple[bytes, bytes, bytes, bytes | None]] = deque()
        self.wake = asyncio.Event()
        # deliveries each outstanding pull request may still bring, oldest first
        self.outstanding: deque[int] = deque()

    def _on_message(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self.arrived.append((subject, reply, data, headers))
        self.wake.set()

    async def open(self) -> None:
        with map_errors(self.what):
            self.sub = await self.js.transport.subscribe(self.inbox, self._on_message)

    async def close(self) -> None:
        with contextlib.suppress(EventStoreError):
            if self.sub is not None:
                with map_errors(self.what):
                    await self.js.transport.unsubscribe(self.sub)
            await self.js.api(f"CONSUMER.DELETE.{self.stream}.{self.name}")

    async def _pull(self) -> None:
        with map_errors(self.what):
            await self.js.nc.publish(self.next_subject, self.request, reply=self.inbox)
        self.outstanding.append(self.batch)

    async def _wait(self) -> None:
        while not self.arrived:
            self.wake.clear()
            try:
                async with asyncio.timeout(self.js.timeout):
                    await self.wake.wait()
            except TimeoutError as exc:
                raise StoreTimeoutError(f"{self.what}: timed out waiting for the server") from exc

    async def batches(self) -> AsyncIterator[list[RawMessage]]:
        for _ in range(_OUTSTANDING):
            await self._pull()
        more = True
        while more:
            await self._wait()
            arrived: list[RawMessage] = []
            while more and self.arrived:
                subject, reply, data, block = self.arrived.popleft()
                # a message's header block is parsed only if someone asks; a status's now
                headers = parse_headers(block) if block and block[8:9] == b" " else None
                if headers is not None and (status := headers.get("Status")) is not None:
                    more = await self._batch_status(status, headers.get("Description", ""))
                    continue
                raw, pending = self._accept(subject, reply, data, block, headers)
                more = pending > 0 and raw.seq < self.end_seq
                if raw.seq > self.end_seq:
                    break
                arrived.append(raw)
                if more and self._delivered():
                    await self._pull()
            if arrived:
                yield arrived

    def _delivered(self) -> bool:
        """Count one delivery; whether it completed a pull request (so pull the next)."""
        self.outstanding[0] -= 1
        if self.outstanding[0] == 0:
            self.outstanding.popleft()
            return True
        return False

    async def _batch_status(self, status: str, description: str) -> bool:
        """Handle a status message; whether more messages may follow."""
        if status == _HEARTBEAT:
            return True
        if status == _NO_MESSAGES:
            if not await self._replica_behind():
                return False  # nothing (more) matches: the range is done
            await self._pull_after_catching_up()
            return True
        if status == _REQUEST_TIMEOUT:
            self.outstanding.popleft()
            await self._pull()
            return True
        if status == _UNAVAILABLE:  # the read's consumer lost its leader: read again
            raise StoreUnavailableError(f"{self.what}: the consumer has no leader ({status})")
        if status == _CONFLICT and description.strip().lower() in _GONE:
            # the consumer went away while a pull was pending: read again, as for a 503
            raise StoreUnavailableError(f"{self.what}: the consumer is gone ({description})")
        raise JetStreamAPIError(self.what, int(status), 0, description)

    async def _replica_behind(self) -> bool:
        """Whether the stream holds messages of the range that the consumer has not delivered.

        A pull says "no messages" when the consumer's own replica has none
        yet: on a cluster it may sit on a node that was restarted and is
        still catching up with the stream, and would end the read early.
        A direct get, which replicas still catching up do not answer, says
        whether the range really ends here.
        """
        if self.last_seq >= self.end_seq:
            return False
        try:
            found = await self.js.direct_get(
                self.stream, self.last_seq + 1, next_by_subject=self.filter or ">"
            )
        except EventStoreError:
            return False  # cannot tell (no permission for direct gets): as without a cluster
        return found is not None and found.seq <= self.end_seq

    async def _pull_after_catching_up(self) -> None:
        """Ask again once the consumer's replica had a moment to catch up, for a bounded time.

        Raises:
            StoreTimeoutError: it is still behind after the client's timeout.
        """
        loop = asyncio.get_running_loop()
        if self.catch_up_deadline is None:
            self.catch_up_deadline = loop.time() + self.js.timeout
        if loop.time() >= self.catch_up_deadline:
            raise StoreTimeoutError(
                f"{self.what}: the replica serving the read stays behind the stream"
                f" (delivered up to {self.last_seq} of {self.end_seq})"
            )
        self.outstanding.popleft()  # the request that found nothing is over
        await asyncio.sleep(_CATCH_UP_PAUSE)
        await self._pull()

    def _accept(
        self,
        subject: bytes,
        reply: bytes,
        data: bytes,
        block: bytes | None,
        headers: dict[str, str] | None,
    ) -> tuple[RawMessage, int]:
        meta = ack_metadata(reply.decode())
        seq, cseq, pending = meta.stream_seq, meta.consumer_seq, meta.num_pending
        if cseq != self.expected_cseq:
            raise EventStoreError(
                f"{self.what}: delivery gap at consumer sequence {self.expected_cseq}"
            )
        self.expected_cseq += 1
        self.last_seq = seq
        raw = RawMessage(self.stream, subject.decode(), seq, meta.stored_ns, data, block, headers)
        return raw, pending
