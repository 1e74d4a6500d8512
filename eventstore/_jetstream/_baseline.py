"""Raw nats-py baselines for benchmarks: the ceiling the store is measured against.

Each baseline is the plainest fast design with nats-py alone: no validation,
no envelope, no retries. The benchmark runs it against the same server in the
same process and reports the store's rate as a ratio of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import TYPE_CHECKING

import nats.aio.client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from nats.aio.msg import Msg
    from nats.js.api import StreamConfig
    from nats.js.client import JetStreamContext

__all__ = ["raw_ordered_read", "raw_pipelined_publish", "raw_projection_loop", "raw_pull_read"]

_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"
_MSG_ID = "Nats-Msg-Id"
_EXPIRES_NS = 5_000_000_000


def _pull_request(n: int) -> bytes:
    """The body of a raw pull request for ``n`` messages (it expires after 5 s)."""
    return json.dumps({"batch": n, "expires": _EXPIRES_NS}).encode()


def _undelivered(msg: Msg) -> int | None:
    """``None`` for a message; for a status (a pull request ended), what it will not deliver."""
    if msg.data or not msg.headers or _STATUS not in msg.headers:
        return None
    return int(msg.headers.get(_PENDING, "0"))


async def raw_pipelined_publish(
    url: str, messages: Sequence[tuple[str, bytes, str]], *, window: int = 4096
) -> int:
    """Publish ``(subject, payload, msg_id)`` tuples pipelined; return how many were acked."""
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], name="riskpipe-bench-raw")
    slots = asyncio.Semaphore(window)
    pending: dict[str, asyncio.Future[bytes]] = {}
    prefix = nc.new_inbox() + "."

    async def on_reply(msg: Msg) -> None:
        fut = pending.pop(msg.subject[len(prefix) :], None)
        if fut is not None:
            slots.release()
            fut.set_result(msg.data)

    await nc.subscribe(prefix + "*", cb=on_reply)
    loop = asyncio.get_running_loop()
    futures = []
    for n, (subject, payload, msg_id) in zip(itertools.count(), messages, strict=False):
        await slots.acquire()
        token = format(n, "x")
        fut: asyncio.Future[bytes] = loop.create_future()
        pending[token] = fut
        futures.append(fut)
        await nc.publish(subject, payload, reply=prefix + token, headers={"Nats-Msg-Id": msg_id})
    acks = await asyncio.gather(*futures)
    await nc.drain()
    return sum(1 for ack in acks if b'"error"' not in ack)


async def raw_projection_loop(  # noqa: PLR0913 - where, what, and the loop's two knobs
    url: str,
    *,
    stream: str,
    filter_subject: str,
    count: int,
    handle: Callable[[str, bytes, int], tuple[str, bytes, str]],
    batch: int = 500,
    window: int = 1000,
    timeout: float = 300.0,
) -> int:
    """The fastest plain nats-py projection loop; returns how many inputs it acknowledged.

    Consumes like the Go client's ``Consume()``: raw pull requests for
    ``batch`` messages with two batches outstanding, topped up at half,
    messages handled in the subscription's callback in stream order.
    ``handle(stored subject, payload, stream sequence)`` turns each input into
    ``(result subject, result payload, msg id)``; the result is published
    with its ``Nats-Msg-Id`` through a window of ``window`` unacknowledged
    publishes (one wildcard inbox for their PubAcks), and the input is acked
    from its result's PubAck. Results go to a scratch stream of their own,
    ``BENCH_RAW_RESULTS`` (subjects ``benchraw.>``); the durable consumer
    ``bench-raw`` carries on where the previous call stopped.

    Raises:
        TimeoutError: ``count`` inputs were not all acknowledged in ``timeout``.
    """
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], name="riskpipe-bench-raw-loop")
    try:
        js = nc.jetstream()
        await js.add_stream(
            name="BENCH_RAW_RESULTS", subjects=["benchraw.>"], storage=StorageType.FILE
        )
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="bench-raw",
                filter_subject=filter_subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60,
                max_ack_pending=-1,
            ),
        )
        loop = _ConsumeLoop(
            nc, stream=stream, handle=handle, batch=batch, window=window, count=count
        )
        async with asyncio.timeout(timeout):
            await loop.run()
        return loop.acked
    finally:
        await nc.drain()


class _ConsumeLoop:
    """One run of :func:`raw_projection_loop`: pulls, the publish window, the acks."""

    def __init__(  # noqa: PLR0913 - the loop's connection, work and knobs
        self,
        nc: nats.aio.client.Client,
        *,
        stream: str,
        handle: Callable[[str, bytes, int], tuple[str, bytes, str]],
        batch: int,
        window: int,
        count: int,
    ) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.bench-raw"
        self.handle = handle
        self.batch = batch
        self.slots = asyncio.Semaphore(window)
        self.count = count
        self.acked = 0
        self.outstanding = 0
        self.done = asyncio.Event()
        self.inbox = nc.new_inbox()
        self.replies = nc.new_inbox() + "."
        self.inputs: dict[str, str] = {}
        """Result publish token to the input's ack subject."""
        self.tokens = itertools.count()

    async def run(self) -> None:
        await self.nc.subscribe(self.replies + "*", cb=self.on_puback)
        await self.nc.subscribe(self.inbox, cb=self.on_message)
        await self.pull(2 * self.batch)
        await self.done.wait()

    async def pull(self, n: int) -> None:
        self.outstanding += n
        await self.nc.publish(self.next_subject, _pull_request(n), reply=self.inbox)

    async def on_message(self, msg: Msg) -> None:
        if (undelivered := _undelivered(msg)) is not None:
            self.outstanding -= undelivered  # not coming: its request ended
        else:
            self.outstanding -= 1
            subject, payload, msg_id = self.handle(
                msg.subject, msg.data, msg.metadata.sequence.stream
            )
            await self.slots.acquire()
            token = format(next(self.tokens), "x")
            self.inputs[token] = msg.reply
            await self.nc.publish(
                subject, payload, reply=self.replies + token, headers={_MSG_ID: msg_id}
            )
        if self.outstanding <= self.batch:
            await self.pull(self.batch)

    async def on_puback(self, msg: Msg) -> None:
        ack = self.inputs.pop(msg.subject[len(self.replies) :], None)
        if ack is None:
            return
        self.slots.release()
        await self.nc.publish(ack, b"+ACK")
        self.acked += 1
        if self.acked >= self.count:
            self.done.set()


async def raw_pull_read(  # noqa: PLR0913 - where, what, which part, and the knobs
    url: str,
    streams: Sequence[str],
    *,
    part: int = 0,
    parts: int = 1,
    batch: int = 1000,
    timeout: float = 120.0,
) -> int:
    """Read part ``part`` of ``parts`` of every message of ``streams``; how many were read.

    Each stream's sequences are cut into ``parts`` slices of about the same
    size, and this call reads its slice of each (the streams one after the
    other) through an ephemeral pull consumer without acks, with raw pull
    requests kept two batches ahead: the plainest fast way to read a log, run
    in ``parts`` processes side by side to read it on every core.

    Raises:
        TimeoutError: the slices were not read in ``timeout``.
    """
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], name=f"riskpipe-bench-raw-read-{part}")
    try:
        js = nc.jetstream()
        read = 0
        async with asyncio.timeout(timeout):
            for stream in streams:
                state = (await js.stream_info(stream)).state
                first, last = state.first_seq, state.last_seq
                size = -(-(last - first + 1) // parts) if state.messages else 0
                start, end = first + part * size, min(last, first + (part + 1) * size - 1)
                if size and start <= end:
                    read += await _read_slice(nc, stream, (start, end), batch)
        return read
    finally:
        await nc.drain()


async def _read_slice(
    nc: nats.aio.client.Client, stream: str, slice_: tuple[int, int], batch: int
) -> int:
    """Every message of ``stream`` in ``slice_`` (first, last; a log without gaps), pulled raw."""
    start, end = slice_
    js = nc.jetstream()
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30,
        ),
    )
    wanted = end - start + 1
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{info.name}"
    inbox = nc.new_inbox()
    done = asyncio.Event()
    received = requested = 0

    async def pull() -> None:
        nonlocal requested
        n = min(batch, wanted - requested)
        if n > 0:
            requested += n
            await nc.publish(next_subject, _pull_request(n), reply=inbox)

    async def on_message(msg: Msg) -> None:
        nonlocal received, requested
        if (undelivered := _undelivered(msg)) is not None:
            requested -= undelivered  # not coming: its request ended, ask again
        else:
            received += 1
            if received >= wanted:
                done.set()
                return
        if requested - received <= batch:
            await pull()

    subscription = await nc.subscribe(inbox, cb=on_message)
    await pull()
    await pull()
    await done.wait()
    await subscription.unsubscribe()
    await js.delete_consumer(stream, info.name)
    return received


async def raw_ordered_read(url: str, streams: Sequence[str], *, timeout: float = 120.0) -> int:
    """Read every message of ``streams`` (concurrently) with nats-py ordered consumers.

    Returns how many messages were read. The ordered consumer is nats-py's own
    fast path for reading a stream: push delivery with flow control, no acks.
    """
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], name="riskpipe-bench-raw-read")
    try:
        js = nc.jetstream()
        async with asyncio.timeout(timeout):
            counts = await asyncio.gather(*(_read_stream(js, stream) for stream in streams))
    finally:
        await nc.drain()
    return sum(counts)


def _stored_filter(config: StreamConfig) -> str:
    """A filter matching every stored subject: a subject transform's output, if there is one."""
    assert config.subjects is not None  # noqa: S101 - checked by the caller
    transform = config.subject_transform
    if transform is not None and transform.dest:
        return re.sub(r"\{\{[^}]*\}\}", "*", transform.dest)
    return config.subjects[0]


async def _read_stream(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if info.state.messages == 0 or info.config.subjects is None:
        return 0
    done = asyncio.Event()
    count = 0

    async def on_message(msg: Msg) -> None:
        nonlocal count
        count += 1
        if msg.metadata.sequence.stream >= last:
            done.set()

    sub = await js.subscribe(
        _stored_filter(info.config), stream=stream, ordered_consumer=True, cb=on_message
    )
    await done.wait()
    await sub.unsubscribe()
    return count
