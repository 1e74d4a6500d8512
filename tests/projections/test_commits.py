"""How the runner commits: without waiting in the common case, as before in every other.

A lane starts a message's one append and moves on; the PubAck's callback
acknowledges the message. Whatever that callback cannot settle goes back to
the path that waits for the PubAck, with the same outcome.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker

from eventstore import DurableConsumer, EventStore, PendingAppend
from projections.risk import RiskProjection

if TYPE_CHECKING:
    import pytest

    from eventstore import AppendResult
    from riskpipe.server import NatsServer


async def _publish(store: EventStore, count: int, entities: int) -> None:
    events = [
        evidence(f"c{i}", entity=f"e{i % entities}", minute=i, severity=("low", "high")[i % 2])
        for i in range(count)
    ]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]


def _count_appends(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count appends started without waiting, and appends that waited."""
    counts = {"soon": 0, "waited": 0}
    append_soon, append = EventStore.append_soon, EventStore.append

    def soon(self: EventStore, *args: object, **kwargs: object) -> PendingAppend | None:
        pending = append_soon(self, *args, **kwargs)  # type: ignore[arg-type]
        counts["soon"] += pending is not None
        return pending

    async def waited(self: EventStore, *args: object, **kwargs: object) -> AppendResult:
        counts["waited"] += 1
        return await append(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EventStore, "append_soon", soon)
    monkeypatch.setattr(EventStore, "append", waited)
    return counts


async def test_assessments_commit_without_waiting(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every assessment is started without waiting and acknowledged by its PubAck's callback."""
    await _publish(store, 120, 6)
    counts = _count_appends(monkeypatch)
    worker = await run_worker(store, nats_server.url, review=False)  # risk appends only
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 120
    assert counts == {"soon": 120, "waited": 0}
    assert worker.outcomes == {"assessed": 120}


async def test_an_unsettled_puback_is_settled_by_waiting(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PubAcks the callback cannot settle go to the waiting path: publish again, one effect each."""
    await _publish(store, 60, 4)
    counts = _count_appends(monkeypatch)
    result = PendingAppend.result
    calls = {"n": 0}

    def every_third_unknown(self: PendingAppend) -> AppendResult | None:
        # as if the PubAck had been lost although the event was stored
        calls["n"] += 1
        stored = result(self)
        return None if calls["n"] % 3 == 0 else stored

    monkeypatch.setattr(PendingAppend, "result", every_third_unknown)
    worker = await run_worker(store, nats_server.url, review=False)  # risk appends only
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 60
    assert counts["soon"] == 60
    assert counts["waited"] == 20  # republished: stored already, a duplicate
    assert worker.outcomes == {"assessed": 60}


async def test_a_failing_commit_callback_releases_the_message(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug after the commit releases that message for redelivery; the worker goes on."""
    await _publish(store, 30, 3)
    committed = RiskProjection.committed
    failed: list[int] = []

    def fails_once(self: RiskProjection, message: object, results: list[AppendResult]) -> None:
        if not failed:
            failed.append(message.sequence)  # type: ignore[attr-defined]
            raise RuntimeError("bug in committed")
        committed(self, message, results)  # type: ignore[arg-type]

    monkeypatch.setattr(RiskProjection, "committed", fails_once)
    async with asyncio.timeout(60):
        worker = await run_worker(store, nats_server.url, review=False)  # risk appends only
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 30
    assert worker.outcomes["retried"] == 1
    assert worker.outcomes["assessed"] == 30  # the redelivery found it stored


async def test_commits_that_cannot_start_at_once_wait_as_before(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No append started early (window full, reconnecting): every commit waits, same effects."""
    await _publish(store, 40, 4)
    counts = _count_appends(monkeypatch)
    monkeypatch.setattr(EventStore, "append_soon", lambda *_, **__: None)
    worker = await run_worker(store, nats_server.url, review=False)  # risk appends only
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 40
    assert counts["waited"] == 40
    assert worker.outcomes == {"assessed": 40}


async def test_an_ack_that_cannot_be_buffered_is_sent_by_waiting(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PubAck arriving while the ack cannot be written: the ack is sent by a task instead."""
    await _publish(store, 30, 3)
    monkeypatch.setattr(DurableConsumer, "ack_nowait", lambda *_: False)
    worker = await run_worker(store, nats_server.url, review=False)  # risk appends only
    assert worker.outcomes == {"assessed": 30}
    for partition in worker.runners:
        info = await store.consumer(f"risk-{partition}").info()
        assert (info["num_ack_pending"], info["num_pending"]) == (0, 0), "every message acked"
    assert len((await read_streams(store)).assessments) == 30
