"""The blocking producer client: :class:`Producer` run on an event loop of its own thread."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from riskpipe.client._producer import Producer

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

__all__ = ["SyncProducer"]

P = ParamSpec("P")
R = TypeVar("R")


class _LoopThread:
    """An event loop running in a daemon thread, for blocking callers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="riskpipe-producer", daemon=True
        )
        self.thread.start()

    def run(self, call: Coroutine[Any, Any, R]) -> R:
        """Run ``call`` on the loop and wait for its result (or its exception)."""
        if threading.current_thread() is self.thread or self.loop.is_closed():
            call.close()
            msg = (
                "this SyncProducer is closed"
                if self.loop.is_closed()
                else "a SyncProducer cannot be used from its own event loop"
            )
            raise RuntimeError(msg)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result()

    def stop(self) -> None:
        """Stop the loop and its thread (once; later calls do nothing)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _blocking(
    method: Callable[Concatenate[Producer, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncProducer, P], R]:
    """``method`` of :class:`Producer`, as a blocking method of :class:`SyncProducer`."""

    def call(self: SyncProducer, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.runner.run(method(self.producer, *args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _connecting(
    connect: Callable[P, Coroutine[Any, Any, Producer]],
) -> Callable[P, SyncProducer]:
    """:meth:`Producer.connect`, blocking, returning a :class:`SyncProducer`."""

    def call(*args: P.args, **kwargs: P.kwargs) -> SyncProducer:
        runner = _LoopThread()
        try:
            return SyncProducer(runner.run(connect(*args, **kwargs)), runner)
        except BaseException:
            runner.stop()
            raise

    call.__doc__ = connect.__doc__
    return call


class SyncProducer:
    """Records evidence, blocking: for scripts, threads and synchronous web apps.

    ``with SyncProducer.connect(url) as producer: producer.record(...)``. It
    takes the same arguments and raises the same errors as :class:`Producer`,
    whose calls it runs on an event loop in a thread of its own; it may be
    shared between threads.
    """

    def __init__(self, producer: Producer, runner: _LoopThread) -> None:
        self.producer = producer
        self.runner = runner

    connect = staticmethod(_connecting(Producer.connect))
    record = _blocking(Producer.record)
    record_outcome = _blocking(Producer.record_outcome)
    record_many = _blocking(Producer.record_many)

    def close(self) -> None:
        """Close the connection and stop the producer's thread; closing again does nothing.

        Raises:
            PermissionDeniedError: the server refused the user a subject meanwhile.
        """
        if self.runner.loop.is_closed():
            return
        try:
            self.runner.run(self.producer.close())
        finally:
            self.runner.stop()

    def __enter__(self) -> Self:
        """Use the producer in a block that closes it."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
