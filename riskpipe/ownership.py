"""The runners a worker starts and stops as it gains and loses partition leases."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import re
import secrets
import socket
from typing import TYPE_CHECKING

import structlog

from eventstore.errors import ConsumerDriftError
from projections import IdleUnconfirmedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections import ProjectionRunner

__all__ = ["LeasedRunners", "member_id"]

_log = structlog.get_logger(__name__)


def member_id() -> str:
    """This worker's name among the members: host, process id and a random suffix.

    Only letters, digits, ``-`` and ``_``: it is a token of a KV key.
    """
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class LeasedRunners:
    """One runner per partition this worker holds; what the leases start and stop.

    A lost lease stops its runner within the time the leases say is left:
    fetching stops at once, in-flight work gets that long to commit and be
    acknowledged, and whatever is left is released (never acknowledged later).
    A hand-over drains as a shutdown does. Every runner task lives in the
    worker's task group.

    With ``until_idle`` (a batch run shared by several processes) each runner
    stops by itself once its partition is idle; the lease is kept, and
    :meth:`start` runs the partition again if asked to.
    """

    def __init__(
        self,
        make_runner: Callable[[int], ProjectionRunner],
        tasks: asyncio.TaskGroup,
        *,
        on_drift: Callable[[ConsumerDriftError], None],
        until_idle: bool = False,
    ) -> None:
        self._make_runner = make_runner
        self._tasks = tasks
        self._on_drift = on_drift
        self._until_idle = until_idle
        self.runners: dict[int, ProjectionRunner] = {}
        """The runners of the partitions held now, by partition."""
        self.finished: collections.Counter[str] = collections.Counter()
        """Outcomes of runners already stopped (their partitions moved on)."""
        self.ran: set[int] = set()
        """Every partition a runner was started for."""
        self.went_idle = asyncio.Event()
        """Set when a runner stopped because its partition was idle (clear it after reading)."""
        self._running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    @property
    def idle(self) -> frozenset[int]:
        """The partitions held whose runner stopped by itself, idle (``until_idle`` only)."""
        return frozenset(p for p, (_, task) in self._running.items() if task.done())

    def start(self, partition: int) -> None:
        """Start the partition's runner (its lease was just acquired), or again once it is idle."""
        entry = self._running.get(partition)
        if entry is not None:
            if not entry[1].done():
                return
            self.finished.update(self.runners[partition].outcomes)
        runner = self._make_runner(partition)
        stop = asyncio.Event()
        task = self._tasks.create_task(self._run(runner, stop), name=f"partition-{partition}")
        self.runners[partition] = runner
        self._running[partition] = (stop, task)
        self.ran.add(partition)

    async def stop(self, partition: int, *, within: float | None) -> None:
        """Stop the partition's runner; with ``within``, its drain is cut to that many seconds."""
        entry = self._running.pop(partition, None)
        if entry is None:
            return
        stop, task = entry
        runner = self.runners[partition]
        if within is not None:
            # the runner reads its drain timeout when it drains: cut it to what is left
            runner.settings = dataclasses.replace(
                runner.settings, drain_timeout=min(runner.settings.drain_timeout, within)
            )
        stop.set()
        await asyncio.wait({task})
        self.finished.update(runner.outcomes)
        del self.runners[partition]

    async def _run(self, runner: ProjectionRunner, stop: asyncio.Event) -> None:
        try:
            await runner.run(stop, until_idle=self._until_idle)
        except ConsumerDriftError as exc:
            self._on_drift(exc)
            return
        except IdleUnconfirmedError as exc:
            # a shared batch ends on the drained check, which asks the leaders itself:
            # the partition counts as idle, and runs again if that check finds it is not
            _log.warning("worker.idle_unconfirmed", consumer=exc.consumer, error=str(exc))
            self.went_idle.set()
            return
        if not stop.is_set():
            self.went_idle.set()

    @property
    def outcomes(self) -> collections.Counter[str]:
        """How many messages the runners finished, by outcome, stopped ones included."""
        total = collections.Counter(self.finished)
        for runner in self.runners.values():
            total.update(runner.outcomes)
        return total
