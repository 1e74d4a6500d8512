"""Permission violations: from nats-py's error callback to the task that was refused.

The server answers a publish or subscription the user may not make with
``-ERR 'Permissions Violation for Publish to "<subject>"'`` and keeps the
connection open. nats-py hands that line to the error callback only: the
request that caused it just waits for an answer that never comes, and times
out. So the connection's callback records the violation here, and every task
that *watches* the connection (an ``async with store:`` block) is cancelled
at once; the block then ends with :class:`PermissionDeniedError` naming the
subject instead of a time-out. A denial means the deployment gave this user
too little: stopping is the only useful answer.

Nothing here runs per message: a task registers once, when its block starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from typing import TYPE_CHECKING, Any

import structlog

from eventstore.errors import PermissionDeniedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client

__all__ = ["Refusals", "refusals_of"]

_log = structlog.get_logger(__name__)
# nats-py lower-cases the server's error line before handing it over
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"')
_BY_CLIENT: weakref.WeakKeyDictionary[Client, Refusals] = weakref.WeakKeyDictionary()


class Refusals:
    """The permission violations of one connection, and the tasks to stop on one."""

    def __init__(self) -> None:
        self.last: PermissionDeniedError | None = None
        self._watching: set[asyncio.Task[Any]] = set()
        self._denied: dict[asyncio.Task[Any], PermissionDeniedError] = {}

    @classmethod
    def attach(cls, nc: Client) -> Refusals:
        """A new record for ``nc``, found again with :func:`refusals_of`."""
        refusals = _BY_CLIENT[nc] = cls()
        return refusals

    def callback(
        self, then: Callable[[Exception], Awaitable[None]]
    ) -> Callable[[Exception], Awaitable[None]]:
        """An error callback that takes permission violations and hands the rest to ``then``."""

        async def on_error(exc: Exception) -> None:
            if not self.record(exc):
                await then(exc)

        return on_error

    def record(self, exc: BaseException) -> bool:
        """Record ``exc`` if it is a permission violation; stop the watching tasks.

        Returns:
            Whether ``exc`` was a permission violation.
        """
        match = _VIOLATION.search(str(exc).lower())
        if match is None:
            return False
        operation, subject = match[1], match[2]
        self.last = error = PermissionDeniedError(subject, operation)
        _log.error("nats.permission_denied", subject=subject, operation=operation)
        for task in self._watching - self._denied.keys():
            if not task.done():
                self._denied[task] = error
                task.cancel(str(error))
        return True

    def watch(self) -> None:
        """Stop the current task with a denial as soon as this connection is refused anything."""
        task = asyncio.current_task()
        if task is not None:
            self._watching.add(task)

    async def settle(self, ended_by: BaseException | None) -> PermissionDeniedError | None:
        """Stop watching; the denial that cancelled the current task, if one did.

        The cancellation it caused is taken back, so the caller can raise the
        denial in its place; if the block ended some other way before that
        cancellation reached it, it is taken here, before the caller awaits
        anything else. A cancellation from elsewhere still stands: then the
        caller gets ``None`` and lets it propagate.
        """
        task = asyncio.current_task()
        if task is None:
            return None
        self._watching.discard(task)
        error = self._denied.pop(task, None)
        if error is None:
            return None
        if not isinstance(ended_by, asyncio.CancelledError):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)  # a pending cancellation is delivered at this await
        return error if task.uncancel() == 0 else None


def refusals_of(nc: Client) -> Refusals | None:
    """The record of a connection made by :meth:`JetStreamClient.connect`, if it is one.

    A connection the caller brought (``from_client``) has none: its error
    callback is the caller's.
    """
    return _BY_CLIENT.get(nc)
