"""Reading a stream in order with an ephemeral pull consumer (no acks, no durable state)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from eventstore._jetstream._client import RawMessage
from eventstore._jetstream._errors import map_errors
from eventstore.errors import EventStoreError, JetStreamAPIError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from eventstore._jetstream._client import JetStreamClient

__all__ = ["read_range"]

_INACTIVE_NS = 60 * 1_000_000_000


def _metadata(reply: str) -> tuple[int, int, int, int]:
    """(stream seq, consumer seq, timestamp ns, pending) from a ``$JS.ACK`` reply subject."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4  # noqa: PLR2004 - v1 ack subjects have 9 tokens
    return (
        int(tokens[base + 3]),
        int(tokens[base + 4]),
        int(tokens[base + 5]),
        int(tokens[base + 6]),
    )


def _to_raw(stream: str, msg: Msg, seq: int, ts_ns: int) -> RawMessage:
    when = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC).replace(
        microsecond=(ts_ns % 1_000_000_000) // 1000
    )
    return RawMessage(stream, msg.subject, seq, when, msg.data, dict(msg.headers or {}))


async def _create_consumer(
    js: JetStreamClient, stream: str, filter_subject: str | None, start_seq: int
) -> str:
    config: dict[str, object] = {
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
    resp = await js.api(f"CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": config})
    return str(resp["name"])


async def read_range(  # noqa: PLR0913 - keyword-only range options
    js: JetStreamClient,
    stream: str,
    *,
    filter_subject: str | None,
    start_seq: int,
    end_seq: int,
    batch: int = 512,
) -> AsyncIterator[RawMessage]:
    """Yield the messages of ``stream`` from ``start_seq`` up to ``end_seq`` inclusive, in order.

    Raises:
        TransientStoreError: the server stopped answering.
        EventStoreError: the consumer could not be created or a delivery was lost.
    """
    if end_seq < start_seq:
        return
    name = await _create_consumer(js, stream, filter_subject, start_seq)
    reader = _RangeReader(js, stream, name, end_seq, batch)
    await reader.open()
    try:
        async for raw in reader.messages():
            yield raw
    finally:
        await reader.close()


class _RangeReader:
    """Pulls batches with ``no_wait`` until ``end_seq`` or nothing is pending."""

    def __init__(
        self, js: JetStreamClient, stream: str, name: str, end_seq: int, batch: int
    ) -> None:
        self.js, self.stream, self.name, self.end_seq = js, stream, name, end_seq
        self.request = orjson.dumps({"batch": batch, "no_wait": True})
        self.batch = batch
        self.inbox = js.nc.new_inbox()
        self.expected_cseq = 1
        self.sub: Subscription | None = None

    async def open(self) -> None:
        with map_errors(f"read {self.stream}"):
            self.sub = await self.js.nc.subscribe(self.inbox)

    async def close(self) -> None:
        with contextlib.suppress(EventStoreError):
            if self.sub is not None:
                with map_errors(f"read {self.stream}"):
                    await self.sub.unsubscribe()
            await self.js.api(f"CONSUMER.DELETE.{self.stream}.{self.name}")

    async def _next(self) -> Msg:
        assert self.sub is not None  # noqa: S101 - open() runs first
        with map_errors(f"read {self.stream}"):
            return await self.sub.next_msg(timeout=self.js.timeout)

    async def messages(self) -> AsyncIterator[RawMessage]:
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}"
        while True:
            with map_errors(f"read {self.stream}"):
                await self.js.nc.publish(subject, self.request, reply=self.inbox)
            received = 0
            while received < self.batch:
                msg = await self._next()
                if (status := (msg.headers or {}).get("Status")) is not None:
                    if self._batch_over(status, msg):
                        break
                    continue
                raw, pending = self._accept(msg)
                received += 1
                if raw.seq > self.end_seq:
                    return
                yield raw
                if pending == 0 or raw.seq >= self.end_seq:
                    return
            if received == 0:
                return  # nothing left to deliver

    def _batch_over(self, status: str, msg: Msg) -> bool:
        if status in ("404", "408"):
            return True
        if status == "100":
            return False  # heartbeat
        description = (msg.headers or {}).get("Description", "")
        raise JetStreamAPIError(f"read {self.stream}", int(status), 0, description)

    def _accept(self, msg: Msg) -> tuple[RawMessage, int]:
        seq, cseq, ts_ns, pending = _metadata(msg.reply)
        if cseq != self.expected_cseq:
            raise EventStoreError(
                f"read {self.stream}: delivery gap at consumer sequence {self.expected_cseq}"
            )
        self.expected_cseq += 1
        return _to_raw(self.stream, msg, seq, ts_ns), pending
