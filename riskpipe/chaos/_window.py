"""Where a worker kill hurts most: after an assessment's PubAck, before the evidence's ack.

The harness listens to what the workers write: each assessment as the risk
stream stores it (``<prefix>.risk.>``; its ``Nats-Msg-Id`` names the evidence), and
each acknowledgement a worker sends for its evidence (``$JS.ACK.<stream>.>``,
naming the evidence's stream sequence and the consumer, so its partition).
Evidence seen assessed but not yet acknowledged is *in the window*: a kill
then leaves an assessment stored for evidence the stream will deliver again,
and the next worker must find it rather than assess twice.

The window is short (a round trip and the worker's turn of its loop), so a
kill aimed at it lands there often, not always; after the kill, what was in
the window and never acknowledged by the dead worker is what the kill hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import TYPE_CHECKING

from eventstore import parse_headers, partition_of
from projections import consumer_name

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventstore import EventStore

__all__ = ["AckWindow"]

_FRESH = 1.0
"""Seconds an assessment waits for its ack before it is forgotten (its worker went on)."""
_V1_TOKENS = 9
"""``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``."""
_V2_TOKENS = 12
"""The same after ``<domain>.<account hash>``, and a random token at the end."""
_ACK = (b"", b"+ACK")


class AckWindow:
    """Evidence assessed but not acknowledged yet, by partition, as the harness sees it."""

    def __init__(self, store: EventStore, projection: str) -> None:
        self._store = store
        self._partitions = store.config.partitions
        self._stream = store.config.stream_for("evidence")
        self._consumer = consumer_name(projection, 0).removesuffix("0")
        self._assessed: dict[int, tuple[int, float]] = {}
        """Evidence sequence: its partition and when its assessment was seen."""
        self._acked: dict[int, float] = {}
        """Acks seen before their assessment (on a cluster, subjects may race)."""
        self._unsubscribe: list[Callable[[], Awaitable[None]]] = []
        self._seen = asyncio.Event()
        """Set at each assessment seen: a kill being aimed looks again."""

    async def start(self) -> None:
        """Listen to the risk stream's subjects and the evidence consumers' acks."""
        transport = self._store.client.transport
        prefix = self._store.config.prefix
        for subject, handler in (
            (f"{prefix}.risk.>", self._on_assessment),
            (f"$JS.ACK.{self._stream}.>", self._on_ack),
            (f"$JS.ACK.*.*.{self._stream}.>", self._on_ack),  # with a domain
        ):
            subscription = await transport.subscribe(subject, handler)
            self._unsubscribe.append(partial(transport.unsubscribe, subscription))

    async def stop(self) -> None:
        """Stop listening."""
        for unsubscribe in self._unsubscribe:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await unsubscribe()
        self._unsubscribe = []

    def in_window(self, partitions: set[int]) -> set[int]:
        """Evidence of ``partitions`` assessed lately and not acknowledged yet."""
        now = time.monotonic()
        for seq in [s for s, (_, at) in self._assessed.items() if now - at > _FRESH]:
            del self._assessed[seq]
        for seq in [s for s, at in self._acked.items() if now - at > _FRESH]:
            del self._acked[seq]
        return {seq for seq, (p, _) in self._assessed.items() if p in partitions}

    async def aim(self, partitions: set[int], limit: float) -> set[int]:
        """Wait until evidence of ``partitions`` is in the window (at most ``limit`` s); which."""
        deadline = time.monotonic() + limit
        while not (hit := self.in_window(partitions)) and (left := deadline - time.monotonic()) > 0:
            self._seen.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._seen.wait()
        return hit

    def _on_assessment(
        self, subject: bytes, _reply: bytes, _payload: bytes, headers: bytes | None
    ) -> None:
        # its id names the evidence (``...:<stream>-<sequence>``): no need to read the body
        msg_id = parse_headers(headers).get("Nats-Msg-Id", "")
        _, found, tail = msg_id.rpartition(f":{self._stream}-")
        if not found or not tail.isdecimal():
            return
        sequence = int(tail)
        tokens = subject.decode().split(".")
        if len(tokens) < 2 or sequence in self._acked:  # noqa: PLR2004 - <tenant>.<entity>
            self._acked.pop(sequence, None)
            return
        partition = partition_of(tokens[-2], tokens[-1], self._partitions)
        self._assessed[sequence] = (partition, time.monotonic())
        self._seen.set()

    def _on_ack(
        self, subject: bytes, _reply: bytes, payload: bytes, _headers: bytes | None
    ) -> None:
        if payload not in _ACK:
            return  # a nak, a term or a "working on it": not done
        tokens = subject.decode().split(".")
        offset = {_V1_TOKENS: 0, _V2_TOKENS: 2}.get(len(tokens))
        if offset is None or not tokens[3 + offset].startswith(self._consumer):
            return
        with contextlib.suppress(ValueError):
            sequence = int(tokens[5 + offset])
            if self._assessed.pop(sequence, None) is None:
                self._acked[sequence] = time.monotonic()
