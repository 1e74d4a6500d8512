"""The timeout middleware: hung handlers time out; every other outcome passes through untouched."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from eventstore import Delivery
from projections import Message, Result
from projections.errors import HandlerTimeoutError
from projections.middleware import timeout

SECONDS = 0.2


def _message() -> Message:
    delivery = Delivery(
        subject="rp.evidence.t1.e1", data=b"{}", headers={}, stream="EVIDENCE", stream_seq=1,
        consumer_seq=1, num_delivered=1, num_pending=0, stored_at=datetime.now(UTC), reply="",
    )  # fmt: skip
    return Message("risk", delivery, "t1", "e1", 5)


async def _hang(_message: Message) -> Result:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _fast(_message: Message) -> Result:
    await asyncio.sleep(0)
    return Result.commit((), "assessed")


async def test_a_hung_handler_times_out_within_a_tenth_more() -> None:
    """The call is cut off after its timeout (plus the watchdog's tenth), as a typed error."""
    started = time.monotonic()
    with pytest.raises(HandlerTimeoutError, match=f"within {SECONDS}s"):
        await timeout(SECONDS)(_hang)(_message())
    elapsed = time.monotonic() - started
    assert SECONDS <= elapsed < SECONDS * 3
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0, "the timeout's own cancellation must not linger"


async def test_fast_calls_return_their_result_and_leave_no_cancellation() -> None:
    """Many quick calls: results pass through; nothing is cancelled after they finish."""
    bounded = timeout(SECONDS)(_fast)
    results = await asyncio.gather(*(bounded(_message()) for _ in range(50)))
    assert {r.outcome for r in results} == {"assessed"}
    await asyncio.sleep(SECONDS * 1.5)  # the watchdog checks again: nothing of ours is due
    assert (await bounded(_message())).outcome == "assessed"


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    """Cancelling the worker's task is not mistaken for a timeout."""
    task = asyncio.create_task(timeout(SECONDS)(_hang)(_message()))
    await asyncio.sleep(SECONDS / 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handler_that_swallows_the_cancellation_keeps_its_result() -> None:
    """A handler that catches the cancellation and finishes: its result, and no lingering cancel."""

    async def stubborn(_message: Message) -> Result:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return Result.commit((), "duplicate_skipped")
        raise AssertionError("unreachable")

    result = await timeout(SECONDS)(stubborn)(_message())
    assert result.outcome == "duplicate_skipped"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
