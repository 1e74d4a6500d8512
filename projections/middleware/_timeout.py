"""Timeout: a handler that hangs becomes a transient failure instead of a stuck worker.

One watchdog per middleware instance checks the running calls a few times per
``seconds`` and cancels the ones past their deadline, instead of a timer per
call (``asyncio.timeout`` schedules and cancels one for every message: a
visible share of a worker's CPU). A call is cut off between ``seconds`` and
``1.1 * seconds`` after it started.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from projections.errors import HandlerTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections._message import Handler, Message, Result

__all__ = ["timeout"]

_CHECKS_PER_TIMEOUT = 10
_MIN_PERIOD = 0.01


class _Watchdog:
    """Deadlines of the running calls, and the task that cancels overdue ones."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.period = max(seconds / _CHECKS_PER_TIMEOUT, _MIN_PERIOD)
        self.running: dict[asyncio.Task[object], float] = {}  # task -> deadline (loop clock)
        self.expired: set[asyncio.Task[object]] = set()
        self.task: asyncio.Task[None] | None = None

    def enter(self, task: asyncio.Task[object]) -> int:
        """Watch ``task``'s call; the cancellations it had already (not ours to convert)."""
        loop = asyncio.get_running_loop()
        began = task.cancelling()
        self.running[task] = loop.time() + self.seconds
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._watch(), name="handler-timeout-watchdog")
        return began

    def leave(self, task: asyncio.Task[object]) -> bool:
        """Forget ``task``'s call; whether the watchdog cancelled it."""
        self.running.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            await asyncio.sleep(self.period)
            now = loop.time()
            for task, deadline in list(self.running.items()):
                if deadline <= now and task not in self.expired:
                    self.expired.add(task)
                    task.cancel()


def timeout(seconds: float) -> Callable[[Handler], Handler]:
    """Bound each handler call by ``seconds``; raise :class:`HandlerTimeoutError` after."""

    def middleware(handler: Handler) -> Handler:
        watchdog = _Watchdog(seconds)

        async def bounded(message: Message) -> Result:
            task = asyncio.current_task()
            if task is None:  # pragma: no cover - handlers always run in a task
                return await handler(message)
            began = watchdog.enter(task)
            try:
                result = await handler(message)
            except asyncio.CancelledError as exc:
                # ours, and nobody else's cancellation pending: it timed out
                if watchdog.leave(task) and task.uncancel() <= began:
                    raise HandlerTimeoutError(seconds) from exc
                raise
            except BaseException:
                if watchdog.leave(task):
                    task.uncancel()  # our cancellation turned into another error: not ours to keep
                raise
            if watchdog.leave(task):
                task.uncancel()  # the handler swallowed our cancellation and finished anyway
            return result

        return bounded

    return middleware
