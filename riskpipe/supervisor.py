"""Several worker processes under one supervisor: started, restarted when they crash, stopped.

The supervisor only keeps N processes alive; the partition leases decide which
partitions each one consumes, so it needs to know nothing about NATS. A child
that exits while the supervisor is not stopping is started again after a
backoff that doubles with each quick exit in a row (and starts over once a
child ran for a while). On SIGTERM or SIGINT every child gets SIGTERM (each
drains and hands its partitions over) and, after the grace period, SIGKILL.

With ``until_idle`` a child that exits 0 is done (every partition is
drained: the children of a batch run share the partitions by leases, and
each waits for the others' partitions too) and is not started again; the
supervisor exits 0 once every child did.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Backoff", "Supervisor"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before starting a child again, from how many quick exits in a row."""

    first: float = 0.5
    limit: float = 30.0
    healthy_after: float = 30.0
    """A child that ran this long before exiting was healthy: the next delay starts over."""

    def delay(self, quick_exits: int) -> float:
        """The wait before the next start after ``quick_exits`` quick exits in a row (>= 1)."""
        return float(min(self.limit, self.first * 2.0 ** max(0, quick_exits - 1)))

    def next_count(self, quick_exits: int, ran_for: float) -> int:
        """The quick-exit count after a child that ran ``ran_for`` seconds exited."""
        return 1 if ran_for >= self.healthy_after else quick_exits + 1


@dataclass
class _Slot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    done: bool = False


class Supervisor:
    """Keeps ``count`` children running ``command(i)`` until stopped (or, idle, all done)."""

    def __init__(  # noqa: PLR0913 - what to run and how many; the rest keyword-only
        self,
        command: Callable[[int], list[str]],
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        until_idle: bool = False,
        grace: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"at least one process is needed, not {count}")
        self.command = command
        self.env = dict(env) if env is not None else None
        self.until_idle = until_idle
        self.grace = grace
        self.backoff = backoff or Backoff()
        self.slots = [_Slot(i) for i in range(count)]
        self.restarts = 0
        self.changed = asyncio.Event()
        """Set whenever a child starts or exits (clear it after reading ``pids``)."""

    @property
    def pids(self) -> list[int]:
        """The PIDs of the children running now."""
        return [s.proc.pid for s in self.slots if s.proc is not None and s.proc.returncode is None]

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` (or every child is done, idle); 0 when every child ended cleanly."""
        try:
            async with asyncio.TaskGroup() as group:
                keepers = [group.create_task(self._keep(slot, stop)) for slot in self.slots]
                everyone_done = group.create_task(self._all_done(keepers))
                await asyncio.wait(
                    {everyone_done, group.create_task(stop.wait())},
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stop.set()
        finally:
            self._kill_left()  # only after a failure of our own: no child outlives us
        clean = all(task.result() for task in keepers)
        _log.info("supervisor.stopped", clean=clean, restarts=self.restarts)
        return 0 if clean else 1

    def _kill_left(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.kill()

    @staticmethod
    async def _all_done(keepers: list[asyncio.Task[bool]]) -> None:
        await asyncio.gather(*keepers)

    async def _keep(self, slot: _Slot, stop: asyncio.Event) -> bool:
        """Keep one slot's child running; True when it ended cleanly."""
        while not stop.is_set():
            code = await self._run_child(slot, stop)
            if code is None:  # stopped by us
                return await self._stopped(slot)
            if self.until_idle and code == 0:
                slot.done = True
                return True
            await self._wait_restart(slot, code, stop)
        return await self._stopped(slot)

    async def _run_child(self, slot: _Slot, stop: asyncio.Event) -> int | None:
        """Start the child and wait for it; ``None`` when ``stop`` came first."""
        slot.proc = await asyncio.create_subprocess_exec(
            *self.command(slot.index), env=self.env, stdin=asyncio.subprocess.DEVNULL
        )
        slot.started_at = time.monotonic()
        _log.info("supervisor.child_started", child=slot.index, pid=slot.proc.pid)
        self.changed.set()
        exited = asyncio.create_task(slot.proc.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        self.changed.set()
        if not exited.done():
            exited.cancel()
            return None
        return exited.result()

    async def _wait_restart(self, slot: _Slot, code: int, stop: asyncio.Event) -> None:
        ran_for = time.monotonic() - slot.started_at
        slot.quick_exits = self.backoff.next_count(slot.quick_exits, ran_for)
        delay = self.backoff.delay(slot.quick_exits)
        _log.warning(
            "supervisor.child_exited",
            child=slot.index,
            pid=slot.proc.pid if slot.proc else None,
            exit=_describe(code),
            ran_seconds=round(ran_for, 1),
            restart_in_seconds=delay,
        )
        self.restarts += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()

    async def _stopped(self, slot: _Slot) -> bool:
        """SIGTERM the child, SIGKILL it after the grace period; True if it exited by itself."""
        proc = slot.proc
        if proc is None or slot.done:
            return True
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self.grace):
                code = await proc.wait()
        except TimeoutError:
            _log.error("supervisor.child_killed", child=slot.index, pid=proc.pid, after=self.grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return False
        _log.info("supervisor.child_stopped", child=slot.index, pid=proc.pid, exit=_describe(code))
        return code in (0, -signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"
