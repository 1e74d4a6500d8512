"""Raw nats-py baselines for benchmarks: the ceiling the store is measured against.

Each baseline is the plainest fast design with nats-py alone: no validation,
no envelope, no retries. The benchmark runs it against the same server in the
same process and reports the store's rate as a ratio of it.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import nats.aio.client

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.msg import Msg

__all__ = ["raw_pipelined_publish"]


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
