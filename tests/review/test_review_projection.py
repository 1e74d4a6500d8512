"""The review projection opens one case per risky entity, exactly once, on real workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from support.pipeline import run_worker
from support.review import append_severities, opened_cases

from analyzers import RiskLevel
from projections.review import Actor, ReviewService, read_cases

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

ANA = Actor(name="ana", role="reviewer")


async def test_a_risky_entity_gets_one_case_and_a_quiet_one_none(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Every assessment at high or above joins the one open case; low ones open nothing."""
    await append_severities(store, "risky", ["critical"] * 4)
    await append_severities(store, "quiet", ["low"])
    worker = await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("risky", 1)]
    review = worker.hosts[1]
    assert review.name == "review"
    assert review.outcomes["case_opened"] == 1
    assert review.outcomes["case_joined"] + review.outcomes["case_opened"] >= 2
    cases = await read_cases(store, "t1", "risky")
    case = cases.cases[0]
    assert "level" in case.opened.triggers
    assert case.opened.assessment.stream == "RISK"
    assert RiskLevel(case.opened.assessment.level) in {RiskLevel.HIGH, RiskLevel.CRITICAL}
    first = [rec async for rec in store.read("t1", "risky", category="risk")]
    assert case.opened.assessment.sequence in {rec.sequence for rec in first}


async def test_a_lost_position_opens_no_second_case(
    store: EventStore, nats_server: NatsServer
) -> None:
    """The review consumer deleted (its position lost): reading assessments again adds nothing."""
    await append_severities(store, "risky", ["critical"] * 3)
    await run_worker(store, nats_server.url)
    await store.client.api("CONSUMER.DELETE.RISK.review-0")
    await store.kv("rp-checkpoints").delete("review-0")
    worker = await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("risky", 1)]
    assert worker.hosts[1].outcomes["case_opened"] == 0
    assert worker.hosts[1].outcomes["duplicate_skipped"] >= 1


async def test_after_a_decision_only_a_higher_level_opens_a_new_case(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Decided at high, a critical assessment opens case 2; decided at critical, none opens."""
    await append_severities(store, "e1", ["high"] * 4)  # medium, medium, high, high
    await run_worker(store, nats_server.url)
    cases = await read_cases(store, "t1", "e1")
    assert [case.opened.assessment.level for case in cases.cases] == [RiskLevel.HIGH]
    service = ReviewService(store, clock=lambda: datetime.now(UTC))
    await service.decide("t1", "e1", 1, "confirmed", "takeover", by=ANA)
    await append_severities(store, "e1", ["high"], start=4)  # critical now: above the decided high
    await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("e1", 1), ("e1", 2)]
    latest = (await read_cases(store, "t1", "e1")).current
    assert latest is not None
    assert latest.opened.assessment.level == RiskLevel.CRITICAL
    await service.decide("t1", "e1", 2, "confirmed", "still the takeover", by=ANA)
    await append_severities(
        store, "e1", ["high"] * 2, start=5
    )  # critical again: not above critical
    await run_worker(store, nats_server.url)
    assert await opened_cases(store) == [("e1", 1), ("e1", 2)]
    assert (await read_cases(store, "t1", "e1")).open_case is None


async def test_review_can_be_turned_off(store: EventStore, nats_server: NatsServer) -> None:
    """``RISKPIPE_REVIEW=false``: the worker runs the risk projection alone."""
    await append_severities(store, "risky", ["critical"] * 3)
    worker = await run_worker(store, nats_server.url, review=False)
    assert [host.name for host in worker.hosts] == ["risk"]
    assert await opened_cases(store) == []
