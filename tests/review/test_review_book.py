"""The review projection decides on the worker's book of cases, not a read per assessment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry
from support.pipeline import run_worker
from support.review import append_severities, opened_cases

from eventstore.errors import PermissionDeniedError, TransientStoreError
from projections.review import (
    Actor,
    DecisionBook,
    ReviewPolicy,
    ReviewService,
    read_cases,
)
from projections.review import _projection as review_projection
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from eventstore import EventStore, RecordedEvent
    from projections.review import EntityCases
    from riskpipe.server import NatsServer

ANA = Actor(name="ana", role="reviewer")


async def _until_opened(store: EventStore, expected: list[tuple[str, int]]) -> None:
    async with asyncio.timeout(30):
        while True:
            if await opened_cases(store) == expected:
                return
            await asyncio.sleep(0.05)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The entities the review projection read from the stream, one item per read."""
    seen: list[str] = []

    async def counted(store: EventStore, tenant: str, entity: str) -> EntityCases:
        seen.append(entity)
        return await read_cases(store, tenant, entity)

    monkeypatch.setattr(review_projection, "read_cases", counted)
    return seen


async def test_a_hot_entity_is_read_once_after_its_case_opens(
    store: EventStore, nats_server: NatsServer, reads: list[str]
) -> None:
    """Twenty risky assessments of each of three entities: one case each, a read or so each."""
    for entity in ("e1", "e2", "e3"):
        await append_severities(store, entity, ["critical"] * 20)
    worker = await run_worker(store, nats_server.url)
    review = worker.hosts[1]
    assert sorted(await opened_cases(store)) == [("e1", 1), ("e2", 1), ("e3", 1)]
    assert review.outcomes["case_opened"] == 3
    assert review.outcomes["case_joined"] == 57
    # the read after each opening; before the book, every one of the 60 was a read
    assert len(reads) <= 6, reads
    assert set(reads) <= {"e1", "e2", "e3"}


async def test_a_case_the_book_missed_is_refused_by_the_fence_and_joined(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, reads: list[str]
) -> None:
    """A book that has not read case 1 would open it again: the fence refuses, a read joins it."""
    await append_severities(store, "e1", ["critical"] * 2)
    await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("e1", 1)]

    async def reads_nothing(_book: DecisionBook) -> int:
        return 0  # "up to date", while it holds nothing of REVIEW

    monkeypatch.setattr(DecisionBook, "refresh", reads_nothing)
    await append_severities(store, "e1", ["critical"] * 3, start=2)
    reads.clear()
    worker = await run_worker(store, nats_server.url)
    review = worker.hosts[1]
    assert await opened_cases(store) == [("e1", 1)]
    assert review.outcomes["case_opened"] == 0
    assert review.outcomes["case_joined"] == 3
    # refused once, decided again on a read, which stands for the book from then on
    assert reads == ["e1"]


async def test_a_book_that_cannot_be_refreshed_gives_way_to_reads(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, reads: list[str]
) -> None:
    """REVIEW unreadable for the book once the worker runs: risky assessments are read."""
    refresh = DecisionBook.refresh
    looks: list[int] = []

    async def fails_after_the_first(self: DecisionBook) -> int:
        looks.append(1)
        if len(looks) == 1:  # the look at start
            return await refresh(self)
        raise TransientStoreError("review stream unavailable")

    monkeypatch.setattr(DecisionBook, "refresh", fails_after_the_first)
    await append_severities(store, "e1", ["critical"] * 4)
    worker = await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("e1", 1)]
    assert worker.hosts[1].outcomes["case_joined"] == 3
    assert reads == ["e1"] * 4


async def test_a_running_worker_sees_a_decision_made_before_the_next_assessment(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Decided between two batches: the next, higher assessment opens case 2 at once."""
    settings = Settings(nats_url=nats_server.url, fetch_timeout=0.2)
    worker = Worker(store, settings, CollectorRegistry())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop, http=False))
    try:
        await append_severities(store, "e1", ["high"] * 4)  # medium, medium, high, high
        await _until_opened(store, [("e1", 1)])
        service = ReviewService(store, clock=lambda: datetime.now(UTC))
        await service.decide("t1", "e1", 1, "confirmed", "takeover", by=ANA)
        await append_severities(
            store, "e1", ["high"], start=4
        )  # critical now: above the decided high
        await _until_opened(store, [("e1", 1), ("e1", 2)])
    finally:
        stop.set()
        await running


async def test_an_event_a_lagging_replica_lacks_is_read_from_the_leader(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A direct get answered "none" for a stored review event: the book asks the leader."""
    await append_severities(store, "e1", ["critical"] * 2)
    await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("e1", 1)]
    direct = store.get
    behind: list[int] = []

    async def behind_on_the_first(
        stream: str, sequence: int, *, next_on_subject: str | None = None
    ) -> RecordedEvent | None:
        if stream == "REVIEW" and sequence == 1:
            behind.append(sequence)
            return None  # as a replica still catching up answers
        return await direct(stream, sequence, next_on_subject=next_on_subject)

    monkeypatch.setattr(store, "get", behind_on_the_first)
    book = DecisionBook(store, ReviewPolicy())
    assert await book.refresh() == 1
    assert behind == [1]
    assert book.position == 1
    cases = book.cases("t1", "e1")
    assert [case.number for case in cases.cases] == [1]
    assert cases.open_case is not None


async def test_refreshes_asked_together_share_one_reading(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked while a refresh runs, a refresh waits for the next one and shares it."""
    await append_severities(store, "e1", ["critical"] * 2)
    await run_worker(store, nats_server.url)
    book = DecisionBook(store, ReviewPolicy())
    state = store.stream_state
    reads: list[str] = []
    gate = asyncio.Event()

    async def slow_state(stream: str) -> dict[str, Any]:
        reads.append(stream)
        await gate.wait()
        return await state(stream)

    monkeypatch.setattr(store, "stream_state", slow_state)
    first = asyncio.create_task(book.refresh())
    await asyncio.sleep(0.05)
    together = [asyncio.create_task(book.refresh()) for _ in range(5)]
    await asyncio.sleep(0.05)
    gate.set()
    counts = await asyncio.gather(first, *together)
    assert reads == ["REVIEW", "REVIEW"]
    assert sum(counts) == 1  # the one review event, folded once
    assert [case.number for case in book.cases("t1", "e1").cases] == [1]


async def test_a_user_without_the_leader_grant_keeps_the_old_skip_and_says_so(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused the leader's get (an older auth.conf): the event is taken as absent, not stuck on."""
    await append_severities(store, "e1", ["critical"] * 2)
    await run_worker(store, nats_server.url)
    direct = store.get

    async def behind(
        stream: str, sequence: int, *, next_on_subject: str | None = None
    ) -> RecordedEvent | None:
        if stream == "REVIEW":
            return None
        return await direct(stream, sequence, next_on_subject=next_on_subject)

    async def refused(*_args: object, **_kwargs: object) -> None:
        raise PermissionDeniedError("$js.api.stream.msg.get.review")

    monkeypatch.setattr(store, "get", behind)
    monkeypatch.setattr(store.client, "leader_get", refused)
    book = DecisionBook(store, ReviewPolicy())
    assert await book.refresh() == 0  # the refusal does not escape
    assert book.position == 1  # passed, not stuck on it
    assert book.cases("t1", "e1").cases == []
