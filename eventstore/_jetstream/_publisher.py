"""Pipelined JetStream publishing: many messages in flight, each awaited for its PubAck.

Every publish carries a reply subject under one wildcard inbox subscription,
so acknowledgements are matched to their futures without a round trip per
message. A window bounds how many are in flight.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from eventstore._jetstream._errors import map_errors
from eventstore.errors import JetStreamAPIError, StoreTimeoutError, StoreUnavailableError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["PubAck", "Publisher"]

_NO_RESPONDERS = "503"


@dataclass(frozen=True, slots=True)
class PubAck:
    """JetStream's answer to a stored (or deduplicated) message."""

    stream: str
    seq: int
    duplicate: bool = False
    batch: str | None = None
    count: int | None = None


def _parse_ack(subject: str, msg: Msg) -> PubAck | Exception | None:
    if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
        return StoreUnavailableError(f"publish to {subject}: no stream is listening on it")
    if not msg.data:
        return None  # an empty reply acknowledges a non-final atomic batch message
    resp = orjson.loads(msg.data)
    if err := resp.get("error"):
        return JetStreamAPIError(
            f"publish to {subject}",
            int(err.get("code", 0)),
            int(err.get("err_code", 0)),
            str(err.get("description", "")),
        )
    return PubAck(
        stream=resp["stream"],
        seq=int(resp["seq"]),
        duplicate=bool(resp.get("duplicate", False)),
        batch=resp.get("batch"),
        count=resp.get("count"),
    )


class Publisher:
    """Publishes with a window of in-flight acknowledgements."""

    def __init__(self, nc: Client, *, window: int = 4096, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._slots = asyncio.Semaphore(window)
        self._tokens = itertools.count()
        self._pending: dict[str, tuple[str, asyncio.Future[PubAck | None]]] = {}
        self._prefix = ""
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe the reply inbox; call once before publishing."""
        self._prefix = self._nc.new_inbox() + "."
        with map_errors("subscribe publish-ack inbox"):
            self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def stop(self) -> None:
        """Fail what is still pending and drop the inbox subscription."""
        for subject, fut in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(StoreUnavailableError(f"publish to {subject}: publisher closed"))
        if self._sub is not None:
            with map_errors("unsubscribe publish-ack inbox"):
                await self._sub.unsubscribe()

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> asyncio.Future[PubAck | None]:
        """Send one message; the future resolves with its PubAck or a store error.

        Raises:
            StoreUnavailableError: the client could not send it at all.
        """
        await self._slots.acquire()
        token = format(next(self._tokens), "x")
        fut: asyncio.Future[PubAck | None] = asyncio.get_running_loop().create_future()
        self._pending[token] = (subject, fut)
        timer = asyncio.get_running_loop().call_later(self._timeout, self._expire, token)
        fut.add_done_callback(lambda _: self._release(token, timer))
        try:
            with map_errors(f"publish to {subject}"):
                await self._nc.publish(
                    subject, payload, reply=self._prefix + token, headers=headers
                )
        except BaseException:
            fut.cancel()  # the caller gets the exception itself; the slot is released
            raise
        return fut

    async def send(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
        """Send one message without asking for an acknowledgement."""
        with map_errors(f"publish to {subject}"):
            await self._nc.publish(subject, payload, headers=headers)

    def _release(self, token: str, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self._pending.pop(token, None)
        self._slots.release()

    def _expire(self, token: str) -> None:
        entry = self._pending.get(token)
        if entry is not None and not entry[1].done():
            subject = entry[0]
            entry[1].set_exception(
                StoreTimeoutError(f"publish to {subject}: no PubAck within {self._timeout}s")
            )

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._pending.get(msg.subject[len(self._prefix) :])
        if entry is None or entry[1].done():
            return
        subject, fut = entry
        result = _parse_ack(subject, msg)
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)
