"""Connections per NATS user that notice when the server refuses them a subject."""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import nats.aio.client
import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

    from riskpipe.server import NatsServer

__all__ = ["Probe", "Session", "Sessions", "create_risk_consumer", "inbox_prefix", "stored"]

_VIOLATION = re.compile(
    r'permissions violation for (?:publish|subscription) to "([^"]+)"', re.IGNORECASE
)


def inbox_prefix(user: str) -> str:
    """The inbox prefix ``auth.conf`` lets ``user`` subscribe under (admin: nats-py's own)."""
    return "_INBOX" if user == "admin" else f"_INBOX_{user}"


class Session:
    """One user's connection; it records which subjects the server refused it."""

    def __init__(self, user: str, nc: Client) -> None:
        self.user = user
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=3)
        self._refusals: dict[str, asyncio.Future[None]] = {}

    def _refusal(self, subject: str) -> asyncio.Future[None]:
        key = subject.lower()  # nats-py lower-cases the server's error line
        if key not in self._refusals:
            self._refusals[key] = asyncio.get_running_loop().create_future()
        return self._refusals[key]

    async def on_error(self, exc: Exception) -> None:
        """Error callback: resolve the refusal of the subject a violation names."""
        if (match := _VIOLATION.search(str(exc))) and not self._refusal(match[1]).done():
            self._refusal(match[1]).set_result(None)

    async def refused(self, subject: str, operation: Awaitable[object]) -> None:
        """Start ``operation``; return once the server refuses ``subject``, fail if it succeeds."""
        task, refusal = asyncio.ensure_future(operation), self._refusal(subject)
        try:
            async with asyncio.timeout(3):
                done, _ = await asyncio.wait({task, refusal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if refusal not in done:
            pytest.fail(f"{self.user} was allowed {subject}: {task.result()!r}")

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request; the decoded answer, error or not."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self.nc.request(f"$JS.API.{subject}", payload, timeout=3)
        answer: dict[str, Any] = json.loads(msg.data)
        return answer

    def request(self, subject: str, body: dict[str, Any] | None = None) -> Awaitable[object]:
        """A raw request on ``subject``, for the refusal checks."""
        payload = json.dumps(body).encode() if body is not None else b""
        return self.nc.request(subject, payload, timeout=3)

    async def subscription_refused(self, subject: str) -> None:
        """Subscribe to ``subject`` and return once the server refuses it.

        A subscription has no answer to wait for, and the server may report the
        violation after its next PONG, so only the violation itself is proof.
        """
        refusal = self._refusal(subject)
        await self.nc.subscribe(subject)
        async with asyncio.timeout(3):
            await refusal


class Sessions:
    """Opens one connection per user and closes them all at the end of a test."""

    def __init__(self, server: NatsServer, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords
        self.opened: list[Session] = []

    async def open(self, user: str, *, inbox: str | None = None) -> Session:
        """Connect as ``user`` with its password, its replies under its inbox prefix."""
        session = Session(user, nats.aio.client.Client())
        async with asyncio.timeout(5):
            await session.nc.connect(
                self.server.url,
                user=user,
                password=self.passwords[user],
                allow_reconnect=False,
                error_cb=session.on_error,
                inbox_prefix=inbox or inbox_prefix(user),
            )
        self.opened.append(session)
        return session

    async def close(self) -> None:
        """Close every connection this test opened."""
        for session in self.opened:
            await session.nc.close()


class Probe:
    """A raw-protocol connection that asks, subject by subject, whether its user may publish.

    Each probe is an empty ``PUB`` without a reply subject (an allowed API request
    is answered to nobody and changes nothing) followed by a ``PING``. The server
    handles a client's commands in order, so a permissions violation for the
    ``PUB`` is written before the ``PONG``: no waiting for an answer that may not come.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: NatsServer, user: str, password: str) -> Probe:
        """Log in as ``user``; fail unless the server accepts the password."""
        host, port = server.url.removeprefix("nats://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        probe = cls(reader, writer)
        await reader.readline()  # INFO
        login = {"user": user, "pass": password, "verbose": False, "protocol": 1}
        writer.write(f"CONNECT {json.dumps(login)}\r\n".encode())
        assert await probe._errors_until_pong() == [], f"{user} could not log in"
        return probe

    async def _errors_until_pong(self) -> list[str]:
        self.writer.write(b"PING\r\n")
        await self.writer.drain()
        errors = []
        async with asyncio.timeout(3):
            while (line := await self.reader.readline()) != b"PONG\r\n":
                if not line:
                    pytest.fail("the server closed the connection")
                if line.startswith(b"-ERR"):
                    errors.append(line.decode().strip())
        return errors

    async def may_publish(self, subject: str) -> bool:
        """Whether the server lets this user publish to ``subject``."""
        self.writer.write(f"PUB {subject} 0\r\n\r\n".encode())
        errors = await self._errors_until_pong()
        refusal = f'Permissions Violation for Publish to "{subject}"'
        assert all(refusal in error for error in errors), errors
        return not errors

    async def close(self) -> None:
        """Hang up."""
        self.writer.close()
        await self.writer.wait_closed()


async def stored(admin: Session, stream: str) -> int:
    """How many messages ``stream`` holds, as the admin sees it."""
    return (await admin.js.stream_info(stream)).state.messages


async def create_risk_consumer(session: Session) -> None:
    """Create the worker's durable consumer of partition 0 the way the projection does."""
    config = {
        "durable_name": "risk-0",
        "ack_policy": "explicit",
        "filter_subject": "rp.evidence.0.>",
    }
    answer = await session.api(
        "CONSUMER.CREATE.EVIDENCE.risk-0", {"stream_name": "EVIDENCE", "config": config}
    )
    assert "error" not in answer, answer
