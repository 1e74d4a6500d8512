"""The first connection: ended at once by an error that retrying cannot fix."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import nats.errors

from eventstore._jetstream._auth import refused_reason
from eventstore._options import DEFAULT_INBOX_PREFIX

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client

    from eventstore._options import ConnectOptions

__all__ = ["FirstConnect", "RefusedError", "inbox_prefix"]

_ABANDON_SECONDS = 0.5


def inbox_prefix(options: ConnectOptions | None) -> str:
    """The prefix of the connection's reply subjects (nats-py's ``inbox_prefix``).

    Every reply the store waits for (API answers, PubAcks, fetched messages)
    arrives on a subscription under it, so it must be a subject space the
    user may subscribe to; a deployment that gives each user its own keeps
    other users from reading these replies.
    """
    return DEFAULT_INBOX_PREFIX if options is None else options.inbox_prefix


class RefusedError(Exception):
    """Raised from the error callback to end a first connection that cannot succeed."""


class FirstConnect:
    """Ends the first connection attempt at once on an error that retrying cannot fix.

    Without it, nats-py retries a refused password or an untrusted certificate
    until the connect time-out, which then reads as "no answer". nats-py awaits
    the error callback inside ``connect``, so raising there ends ``connect``.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.done = False

    def or_then(
        self, then: Callable[[Exception], Awaitable[None]]
    ) -> Callable[[Exception], Awaitable[None]]:
        """The connect-time check, then ``then`` for every error once connected."""

        async def on_error(exc: Exception) -> None:
            if not self.done and (reason := refused_reason(exc)) is not None:
                raise RefusedError(reason)
            await then(exc)

        return on_error

    async def abandon(self) -> None:
        """Close a connection that never came up.

        After a failed TLS upgrade nats-py's close waits forever for a socket
        that asyncio has already closed, so the wait is bounded.
        """
        self.done = True
        with contextlib.suppress(TimeoutError, OSError, nats.errors.Error):
            async with asyncio.timeout(_ABANDON_SECONDS):
                await self.nc.close()
