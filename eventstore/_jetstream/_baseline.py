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
from nats.js.api import ConsumerConfig, StorageType

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.msg import Msg
    from nats.js.api import StreamConfig
    from nats.js.client import JetStreamContext

__all__ = ["raw_ordered_read", "raw_pipelined_publish", "raw_projection_loop"]


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


async def raw_projection_loop(
    url: str, *, stream: str, filter_subject: str, count: int, batch: int = 256
) -> int:
    """The plain nats-py projection loop: fetch, decode, publish a result with Msg-Id, ack.

    Results go to a scratch stream of their own (``BENCH_RAW_RESULTS``); each
    input is acknowledged after its result's PubAck. Returns how many were
    processed.
    """
    nc = nats.aio.client.Client()
    await nc.connect(servers=[url], name="riskpipe-bench-raw-loop")
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW_RESULTS", subjects=["benchraw.>"], storage=StorageType.FILE)
    sub = await js.pull_subscribe(
        filter_subject, durable="bench-raw", stream=stream, config=ConsumerConfig(ack_wait=30)
    )
    done = 0
    while done < count:
        msgs = await sub.fetch(batch, timeout=5)
        acks = []
        for msg in msgs:
            event = json.loads(msg.data)
            result = json.dumps({"event": event["id"], "score": len(msg.data) % 100 / 100}).encode()
            acks.append(
                await js.publish_async(
                    f"benchraw.{event['subject']}",
                    result,
                    headers={"Nats-Msg-Id": f"raw:{event['id']}"},
                )
            )
        await asyncio.gather(*acks)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await nc.drain()
    return done


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
