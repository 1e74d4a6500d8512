"""A reputation service of the harness's own, failing on cue: transient analyzer failures.

Workers of a run that injects poison enrich the evidence of one pattern
through it (``RISKPIPE_ENRICHMENT_PATTERNS``). It answers a neutral modifier
(0: the score is what the analyzer alone makes it), except for evidence
whose id asks for failures: ``transient-N-...``
fails its first N deliveries with a 503 and is then answered, so it must be
assessed; ``transient-always-...`` always fails, so it must be dead-lettered
once ``max_deliver`` deliveries are spent.

A delivery is told by the number the worker sends with each call
(``Riskpipe-Delivery``), not by counting calls: a delivery cut short (a worker
killed, paused or cut off while it held the message, a redelivery replacing
a held one) makes fewer calls than the others, or none, and counted calls
would then fail deliveries past the first N. A call without the number is
refused (400): the evidence becomes a dead letter, which the checker reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import orjson

from analyzers.enrichment import DELIVERY_HEADER

__all__ = ["ALWAYS", "FlakyEnricher", "transient_id"]

ALWAYS = -1
"""Deliveries to fail for evidence that must end as a dead letter: all of them."""
_PREFIX = "transient-"
_OK = b'{"modifier": 0.0}'
_FAILED = b'{"error": "injected transient failure"}'
_UNNUMBERED = b'{"error": "no delivery number (Riskpipe-Delivery)"}'
_HEADER = DELIVERY_HEADER.lower().encode()
_ANSWERS: dict[bool | None, tuple[bytes, bytes]] = {
    True: (b"200 OK", _OK),
    False: (b"503 Service Unavailable", _FAILED),
    None: (b"400 Bad Request", _UNNUMBERED),
}
_MAX_BODY = 1 << 20


def transient_id(failures: int, rest: str) -> str:
    """The evidence id that asks the service to fail ``failures`` deliveries (``ALWAYS``: all)."""
    return f"{_PREFIX}{'always' if failures == ALWAYS else failures}-{rest}"


def _failures(evidence_id: str) -> int:
    """How many deliveries ``evidence_id`` asks to fail (0: none; ``ALWAYS``: all)."""
    if not evidence_id.startswith(_PREFIX):
        return 0
    count = evidence_id[len(_PREFIX) :].split("-", 1)[0]
    if count == "always":
        return ALWAYS
    return int(count) if count.isdigit() else 0


class FlakyEnricher:
    """An HTTP/1.1 reputation service on 127.0.0.1 that fails the evidence that asks for it."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        """Calls per evidence id."""
        self.failed = 0
        self.unnumbered = 0
        """Calls about transient evidence that did not say their delivery (refused)."""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """Where the workers post (after :meth:`start`)."""
        assert self._server is not None  # noqa: S101 - started first
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/reputation"

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:  # a handler waiting for a request sees the end
                writer.close()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    def answer(self, evidence_id: str, delivery: int | None) -> bool | None:
        """Count a call about ``evidence_id`` made in ``delivery``; whether it is answered.

        ``False``: it fails (a 503). ``None``: it cannot be told, the call
        named no delivery while the evidence asks for failures (a 400).
        """
        self.seen[evidence_id] += 1
        failures = _failures(evidence_id)
        if failures == 0:
            return True
        if failures != ALWAYS and delivery is None:
            self.unnumbered += 1
            return None
        ok = failures != ALWAYS and delivery is not None and delivery > failures
        self.failed += not ok
        return ok

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - a handler runs in a task
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                while True:  # keep-alive: until the worker hangs up or the service stops
                    await self._exchange(reader, writer)
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request and answer it.

        Raises:
            asyncio.IncompleteReadError: the client went away mid-request.
            ValueError: the request is not one the workers send.
        """
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        delivery: int | None = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == _HEADER:
                delivery = int(value)
        if not 0 <= length <= _MAX_BODY:
            raise ValueError(length)
        body = orjson.loads(await reader.readexactly(length)) if length else {}
        evidence = body.get("evidence") if isinstance(body, dict) else None
        evidence_id = evidence.get("id") if isinstance(evidence, dict) else None
        ok = self.answer(evidence_id, delivery) if isinstance(evidence_id, str) else True
        status, payload = _ANSWERS[ok]
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        await writer.drain()
