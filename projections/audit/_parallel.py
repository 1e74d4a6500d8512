"""Replaying in several processes: the scope's entities in parts, one process each.

Verifying costs several times more than reading, and one Python process runs
on one core. Entities never share state, so the replay splits the scope's
entities into parts. The replaying process reads both streams once, as
always, replays part 0 itself and hands every message of another part to a
forked child, which replays that part from what it is handed: a child never
reads from NATS.

Why not let each child read for itself? Reading all of both streams costs
each child a fifth of a whole replay; and a consumer filtered on one part's
subjects delivers several times more slowly than one reading everything (and
the server checks its filters pairwise when it creates it). Handing a message
over through a socket costs a couple of microseconds.

The children are forked, not spawned: a fork starts in milliseconds with
everything imported and the replay's state (bounds, dead letters) already
read, where a fresh interpreter costs most of a second. A child never touches
what it inherited from the parent's event loop: it runs a loop of its own,
and sends its result back pickled through its socket. Forking a process with
threads can deadlock the child, so the parent keeps no thread of its own alive
between replays (see :class:`_Waiter`).

A parent that hands messages over faster than a child replays them waits
once :data:`MAX_BACKLOG` bytes are queued for it, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from eventstore import RawMessage
from projections.audit._records import EntityKey, closing_iterator, entity_key
from projections.audit.errors import ReplayPartError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
    from multiprocessing.process import BaseProcess

    from eventstore import Category, EventStore
    from projections.audit._scope import ReplayScope

    _Columns = tuple[
        list[str],
        list[str],
        list[int],
        list[int],
        list[bytes],
        list[bytes | None],
        list[dict[str, str] | None],
    ]

__all__ = [
    "Child",
    "Inbox",
    "Partition",
    "auto_jobs",
    "fork_child",
    "handing_over",
    "partition",
]

MIN_POSITIONS_PER_JOB = 500
"""Below this many evidence positions per process, forking saves nothing (measured: at 1,000
events two processes replay as fast as one, at 3,000 half as fast again)."""
MAX_AUTO_JOBS = 4
OWN_SHARE = 0.5
"""The parent's part, relative to a child's: it also reads and hands over everything."""

Source = Literal["evidence", "risk"]
_T = TypeVar("_T")
_LENGTH = struct.Struct("!Q")
MAX_BACKLOG = 32 << 20
"""Bytes waiting for a child before the parent waits for it to catch up."""
_SOCKET_BUFFER = 8 << 20


@dataclass(frozen=True, slots=True)
class Partition:
    """The scope's entities, each in one of ``parts`` parts; part 0 is the replaying process's."""

    parts: int
    assigned: Mapping[EntityKey, int]
    _subjects: dict[str, int] = field(default_factory=dict, compare=False)

    def part_of(self, subject: str) -> int:
        """The part of the entity of ``subject`` (any category)."""
        part = self._subjects.get(subject)
        if part is None:
            key = entity_key(subject)
            part = self.assigned.get(key)
            if part is None:  # stored after the partition was made: still in exactly one
                part = zlib.crc32(f"{key[0]}.{key[1]}".encode()) % self.parts
            self._subjects[subject] = part
        return part


def auto_jobs(positions: int) -> int:
    """How many processes suit a replay of ``positions`` evidence positions on this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_AUTO_JOBS, positions // MIN_POSITIONS_PER_JOB))


async def partition(store: EventStore, scope: ReplayScope, jobs: int) -> Partition | None:
    """Split ``scope``'s entities into at most ``jobs`` parts of about the same work.

    An entity's work is the messages on its evidence and risk subjects; the
    heaviest go first, each to the part furthest below its share (part 0's
    share is :data:`OWN_SHARE` of a child's). ``None`` (one process) for
    ``jobs`` below 2, a scope of one entity, or a system other than Linux
    (elsewhere forking a process with threads is not safe).
    """
    if (
        jobs < 2  # noqa: PLR2004 - one part is no split
        or scope.entity is not None
        or not sys.platform.startswith("linux")  # where forking a process is safe
    ):
        return None
    config = store.config
    weights: Counter[EntityKey] = Counter()
    streams: tuple[tuple[Category, str], ...] = (
        ("evidence", config.stream_for("evidence")),
        ("risk", config.stream_for("risk")),
    )
    for category, stream in streams:
        wanted = scope.subject_filter(config, category) or f"{config.prefix}.{category}.>"
        for subject, count in (await store.subjects(stream, wanted)).items():
            weights[entity_key(subject)] += count
    parts = min(jobs, len(weights))
    if parts < 2:  # noqa: PLR2004 - one part is no split
        return None
    shares = [OWN_SHARE] + [1.0] * (parts - 1)
    loads = [0] * parts
    assigned: dict[EntityKey, int] = {}
    for key, count in sorted(weights.items(), key=lambda item: (-item[1], item[0])):
        part = min(range(parts), key=lambda p: ((loads[p] + count) / shares[p], p))
        loads[part] += count
        assigned[key] = part
    return Partition(parts, assigned)


# -- the parent's side ---------------------------------------------------------------------


class Child:
    """A forked process replaying one part, fed through a socket.

    A batch is written at once while the socket has room, so the child is
    fed without waiting for the parent's event loop; what does not fit is
    written by a task. Past :data:`MAX_BACKLOG` bytes waiting, the parent
    waits for the child (the flow control).
    """

    def __init__(self, part: int, process: BaseProcess, sock: socket.socket) -> None:
        self.part, self.process, self.sock = part, process, sock
        self._backlog: deque[memoryview] = deque()
        self._backlog_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._reader: _Waiter[bytes] | None = None
        self._failed: Exception | None = None

    async def hand_over(self, source: Source, batch: list[RawMessage] | None) -> None:
        """Send the child a batch of ``source`` (``None``: that source has ended).

        Raises:
            ReplayPartError: the child is gone.
        """
        if self._failed is not None:
            raise self._gone(self._failed)
        frame = memoryview(_frame((source, None if batch is None else _columns(batch))))
        if not self._backlog:
            try:
                frame = frame[self.sock.send(frame) :]
            except BlockingIOError:
                pass
            except OSError as exc:
                self._failed = exc
            if self._failed is not None:
                raise self._gone(self._failed)
            if not frame:
                return
        self._backlog.append(frame)
        self._backlog_bytes += len(frame)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        if self._backlog_bytes > MAX_BACKLOG:
            await self._writer

    async def result(self) -> object:
        """What the child's job returned, once everything is written and it has.

        Raises:
            ReplayPartError: the child raised (its error is the cause, when it pickles) or died.
        """
        if self._writer is not None:
            await self._writer
        if self._failed is None:
            self.sock.settimeout(None)  # nothing left to write: wait for the result in a thread
            self._reader = _Waiter(_receive, self.sock)
            try:
                frame = await self._reader.result()
            except (EOFError, OSError) as exc:
                self._failed = exc
        if self._failed is not None:
            raise self._gone(self._failed)
        kind, body, why = pickle.loads(frame)  # noqa: S301 - our own child
        if kind == "failed":
            raise ReplayPartError(f"replay part {self.part} failed: {why}") from body
        return body

    async def stop(self) -> None:
        """Stop writing, kill the child if it still runs, and reap it."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.process.is_alive():
            self.process.kill()
        await _Waiter(self.process.join).result()
        if self._reader is not None:  # a reader still waiting has seen the child's end close
            self._reader.join()
        self.sock.close()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self._backlog:
            frame = self._backlog[0]
            try:
                await loop.sock_sendall(self.sock, frame)
            except OSError as exc:  # the child is gone: the next hand-over says so
                self._failed = exc
                self._backlog.clear()
                return
            self._backlog.popleft()
            self._backlog_bytes -= len(frame)

    def _gone(self, seen: BaseException) -> ReplayPartError:
        """Why the child is gone: the failure it sent, else its exit code (and ``seen``)."""
        self.sock.settimeout(1.0)  # a failure it sent is there already
        with contextlib.suppress(EOFError, OSError, pickle.UnpicklingError, ValueError):
            kind, cause, why = pickle.loads(_receive(self.sock))  # noqa: S301 - our own child
            if kind == "failed":
                failed = ReplayPartError(f"replay part {self.part} failed: {why}")
                failed.__cause__ = cause or seen
                return failed
        self.process.join(timeout=1)
        gone = ReplayPartError(
            f"replay part {self.part} ended without a result (exit code {self.process.exitcode})"
        )
        gone.__cause__ = seen
        return gone


class _Waiter(Generic[_T]):
    """A blocking call in a thread started for it alone, awaited by the event loop.

    Not the loop's executor (``asyncio.to_thread``): its threads stay alive,
    idle, once used, and the next replay in this process would fork its
    children from a process with threads, which can deadlock them (Python
    3.12+ warns of it). This thread ends with the call, and is joined.
    """

    def __init__(self, call: Callable[..., _T], *args: object) -> None:
        self._done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(call, *args), name="riskpipe-replay-wait", daemon=True
        )
        self._thread.start()

    def _run(self, call: Callable[..., _T], *args: object) -> None:
        try:
            self._done.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            self._done.set_exception(exc)

    async def result(self) -> _T:
        """What the call returned, once it has and its thread has ended.

        Raises:
            BaseException: what the call raised.
        """
        value = await asyncio.wrap_future(self._done)
        self.join()
        return value

    def join(self) -> None:
        """Wait for the thread to end: at once, when the call has returned."""
        self._thread.join()


def fork_child(
    part: int, job: Callable[[Inbox], Coroutine[Any, Any, object]], siblings: list[Child]
) -> Child:
    """Fork a child that runs ``job(inbox)`` on an event loop of its own and sends its result.

    ``siblings``: the children forked before, whose sockets the new child must not hold.
    """
    ours, theirs = socket.socketpair()
    with contextlib.suppress(OSError):  # as much as the system allows
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
    process = multiprocessing.get_context("fork").Process(
        target=_child_main,
        args=(theirs, [ours, *(sibling.sock for sibling in siblings)], job),
        name=f"riskpipe-replay-{part}",
        daemon=True,
    )
    process.start()
    theirs.close()
    ours.settimeout(0.0)  # non-blocking, for the event loop
    return Child(part, process, ours)


async def handing_over(
    batches: AsyncIterator[list[RawMessage]],
    source: Source,
    partition: Partition,
    children: list[Child],
) -> AsyncIterator[list[RawMessage]]:
    """Part 0's messages of ``batches``; every other part's go to its child as they are read.

    Closing it closes ``batches`` and tells the children that ``source`` has ended.
    """
    try:
        async for batch in batches:
            slices: list[list[RawMessage]] = [[] for _ in range(partition.parts)]
            for raw in batch:
                slices[partition.part_of(raw.subject)].append(raw)
            for child in children:
                if slices[child.part]:
                    await child.hand_over(source, slices[child.part])
            if slices[0]:
                yield slices[0]
    finally:
        await closing_iterator(batches)
        for child in children:
            with contextlib.suppress(ReplayPartError):  # a child that is gone says so later
                await child.hand_over(source, None)


# -- the child's side ---------------------------------------------------------------------


class Inbox:
    """A child's view of the batches handed over: one iterator per source.

    The parent interleaves the sources as it reads them; a batch of the
    source not asked for waits here.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._waiting: dict[Source, deque[list[RawMessage] | None]] = {
            "evidence": deque(),
            "risk": deque(),
        }

    async def batches(self, source: Source) -> AsyncIterator[list[RawMessage]]:
        """The batches of ``source``, until the parent says it has ended."""
        waiting = self._waiting[source]
        while True:
            while not waiting:
                # a blocking read: the child has nothing else to do until it arrives
                arrived, columns = pickle.loads(_receive(self._sock))  # noqa: S301 - our parent
                self._waiting[arrived].append(None if columns is None else _messages(columns))
            batch = waiting.popleft()
            if batch is None:
                return
            yield batch


def _child_main(
    sock: socket.socket,
    inherited: list[socket.socket],
    job: Callable[[Inbox], Coroutine[Any, Any, object]],
) -> None:
    """A forked child: run ``job`` on a fresh event loop and send back what it returned."""
    for other in inherited:  # the parent's ends: a child sees its parent end when the parent does
        other.close()
    signal.set_wakeup_fd(-1)  # the parent's event loop owns the one inherited
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its children
    asyncio._set_running_loop(None)  # noqa: SLF001 - the parent's loop was running in this thread
    gc.freeze()  # what was inherited is never garbage here: leave it out of collections
    message: tuple[str, object, str | None]
    try:
        result = asyncio.run(job(Inbox(sock)))
    except BaseException as exc:  # noqa: BLE001 - anything the job raised goes to the parent
        message = ("failed", _portable(exc), f"{type(exc).__name__}: {exc}")
    else:
        message = ("done", result, None)
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        sock.sendall(_frame(message))
    sock.close()


def _frame(value: object) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _receive(sock: socket.socket) -> bytes:
    """One frame, read blocking.

    Raises:
        EOFError: the other end closed.
    """
    (size,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    return _exactly(sock, size)


def _exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the other end closed")
        got += n
    return bytes(buffer)


def _portable(exc: BaseException) -> BaseException | None:
    """``exc`` if it survives pickling as it is, for the parent to chain."""
    with contextlib.suppress(Exception):
        if type(pickle.loads(pickle.dumps(exc))) is type(exc):  # noqa: S301 - our own bytes
            return exc
    return None


def _columns(batch: list[RawMessage]) -> _Columns:
    # a list per field pickles several times faster than the dataclasses
    return (
        [raw.stream for raw in batch],
        [raw.subject for raw in batch],
        [raw.seq for raw in batch],
        [raw.stored_ns for raw in batch],
        [raw.data for raw in batch],
        [raw.header_block for raw in batch],
        [raw.parsed_headers for raw in batch],
    )


def _messages(columns: _Columns) -> list[RawMessage]:
    return list(map(RawMessage, *columns))
