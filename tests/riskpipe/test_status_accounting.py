"""`status` counts assessments by the evidence they answer, and exits 2 on a gap that stays."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker

from eventstore import partition_of

if TYPE_CHECKING:
    from eventstore import Delivery, DurableConsumer, EventStore
    from riskpipe.server import NatsServer


def _consumer(store: EventStore) -> DurableConsumer:
    """The worker's consumer of the partition entity t1/e1 is in."""
    return store.consumer(f"risk-{partition_of('t1', 'e1', store.config.partitions)}")


async def _taken_by_someone_else(store: EventStore, count: int) -> list[Delivery]:
    """``count`` evidence deliveries pulled from the worker's consumer by another client."""
    consumer = _consumer(store)
    taken: list[Delivery] = []
    while len(taken) < count:
        taken += await consumer.fetch(count - len(taken), timeout=2.0)
    return taken


async def _acknowledged(store: EventStore, deliveries: list[Delivery]) -> None:
    """Acknowledge ``deliveries`` as their taker, and wait until the server has counted that."""
    consumer = _consumer(store)
    before = int((await consumer.info())["num_ack_pending"])
    for delivery in deliveries:
        await consumer.ack(delivery)
    async with asyncio.timeout(10):
        while int((await consumer.info())["num_ack_pending"]) > before - len(deliveries):  # noqa: ASYNC110 - the server counts acks; nothing signals it
            await asyncio.sleep(0.05)


async def _scored_twice_then_two_more(store: EventStore, url: str) -> None:
    """Evidence a1 and a2 assessed by a worker; a3 and a4 stored after it went idle."""
    for n in (1, 2):
        await store.append(evidence(f"a{n}", minute=n))
    await run_worker(store, url)
    for n in (3, 4):
        await store.append(evidence(f"a{n}", minute=n))


def _status(url: str) -> tuple[int, dict[str, object], str]:
    """``riskpipe status --json`` and ``riskpipe status``: exit status, JSON, text."""
    env = {"RISKPIPE_NATS_URL": url}
    as_json = riskpipe("status", "--json", env=env)
    text = riskpipe("status", env=env)
    assert as_json.returncode == text.returncode, text.stdout + text.stderr
    return as_json.returncode, orjson.loads(as_json.stdout), text.stdout


async def test_a_message_on_risk_that_is_no_assessment_hides_no_evidence(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Evidence acknowledged without an answer is a gap, however many other messages RISK holds."""
    await _scored_twice_then_two_more(store, nats_server.url)
    # a3 and a4 acknowledged by another client: neither assessed nor dead-lettered
    await _acknowledged(store, await _taken_by_someone_else(store, 2))
    for n in (1, 2):  # and two messages on RISK that answer no evidence
        await store.append_unchecked("risk", "t1", "e9", b'{"hello": 1}', msg_id=f"other:{n}")
    code, status, text = _status(nats_server.url)
    assert code == 2, text
    assert (status["evidence"], status["assessed"], status["pending"]) == (4, 2, 0)
    assert (status["gap"], status["risk_foreign"], status["balanced"]) == (2, 2, False)
    assert "GAP: 2 evidence event(s) neither assessed, dead-lettered nor pending" in text
    assert "foreign on RISK: 2 (sequences 3, 4), not counted" in text


async def test_evidence_lost_beside_a_message_in_flight_is_not_waved_through(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A message in flight cannot close a gap: status says so instead of "numbers settle"."""
    await _scored_twice_then_two_more(store, nats_server.url)
    lost, held = await _taken_by_someone_else(store, 2)
    await _acknowledged(store, [lost])  # a3 acknowledged unanswered; a4 held, in flight
    code, status, text = _status(nats_server.url)
    assert code == 2, text
    assert status["consumer"]["num_ack_pending"] == 1  # type: ignore[index]
    assert (status["evidence"], status["assessed"], status["pending"], status["gap"]) == (
        4,
        2,
        1,
        1,
    )
    assert "numbers settle" not in text
    assert held.stream_seq == 4


async def test_a_repeated_assessment_counts_its_evidence_once(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A second copy of an assessment answers no second evidence: the numbers still add up."""
    await store.append(evidence("a1"))
    await run_worker(store, nats_server.url)
    last = await store.last_message(store.config.subject("risk", "t1", "e1"))
    assert last is not None
    await store.append_unchecked("risk", "t1", "e1", last.data, msg_id="copied")
    code, status, text = _status(nats_server.url)
    assert code == 0, text
    assert (status["evidence"], status["assessed"], status["risk_repeated"]) == (1, 1, 1)
    assert status["balanced"] is True
    assert "1 repeated assessment(s)" in text
