"""Decisions feed back: the next assessments carry them as named contributions, and replay holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker

from analyzers import RiskLevel
from projections.audit import replay
from projections.review import Actor, ReviewService, read_cases

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

ANA = Actor(name="ana", role="reviewer")


async def _append(store: EventStore, entity: str, severities: list[str], start: int = 0) -> None:
    for n, severity in enumerate(severities, start):
        await store.append(evidence(f"{entity}-{n}", entity=entity, severity=severity, minute=n))


async def _assessments(store: EventStore, entity: str) -> list[dict[str, Any]]:
    return [
        rec.event.data["assessment"]  # type: ignore[index, misc]
        async for rec in store.read("t1", entity, category="risk")
        if rec.event is not None
    ]


def _service(store: EventStore) -> ReviewService:
    return ReviewService(store, clock=lambda: datetime.now(UTC))


async def test_a_confirmed_case_holds_the_entity_at_the_decided_level(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Confirmed at critical: the next (weaker) evidence is assessed critical, and says why."""
    await _append(store, "e1", ["high"] * 3)  # medium, medium, high: a case opens
    await run_worker(store, nats_server.url)
    _, version = await _service(store).decide(
        "t1", "e1", 1, "confirmed", "takeover", by=ANA, level=RiskLevel.CRITICAL
    )
    await _append(store, "e1", ["low"], start=3)
    await run_worker(store, nats_server.url)
    latest = (await _assessments(store, "e1"))[-1]
    assert latest["level"] == "critical"
    assert latest["contributions"]["review:confirmed"] > 0.0
    assert latest["review"]["floor"] == "critical"
    assert latest["review"]["decisions"] == [version]
    assert abs(sum(latest["contributions"].values()) - latest["score"]) < 1e-9
    report = await replay(store)
    assert report.ok, report.findings[:3]
    assert report.totals.identical == report.totals.checked == 4
    shown = riskpipe(
        "explain", "--tenant", "t1", "--entity", "e1", "--json",
        env={"RISKPIPE_NATS_URL": nats_server.url},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert '"review:confirmed"' in shown.stdout
    assert '"floor": "critical"' in shown.stdout or '"floor":"critical"' in shown.stdout


async def test_a_false_positive_dampens_what_raised_the_case(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Two entities, the same evidence; the one decided a false positive scores lower."""
    for entity in ("fp", "twin"):
        await _append(store, entity, ["high"] * 3)
    await run_worker(store, nats_server.url)
    opened = (await read_cases(store, "t1", "fp")).cases[0].opened
    assert opened.assessment.patterns == ("failed_login_burst",)
    await _service(store).decide("t1", "fp", 1, "false_positive", "the user's own VPN", by=ANA)
    for entity in ("fp", "twin"):
        await _append(store, entity, ["high"], start=3)
    await run_worker(store, nats_server.url)
    fp, twin = [(await _assessments(store, entity))[-1] for entity in ("fp", "twin")]
    assert fp["contributions"]["review:false_positive"] < 0.0
    assert fp["score"] < twin["score"]
    assert "review" not in twin
    assert (
        fp["contributions"]["evidence:failed_login_burst"]
        == (twin["contributions"]["evidence:failed_login_burst"])
    )
    report = await replay(store)
    assert report.ok, report.findings[:3]
    assert report.totals.identical == report.totals.checked == 8


async def test_a_reopened_case_no_longer_weighs_on_scoring(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Reopening withdraws the decision: later assessments carry no review signal."""
    await _append(store, "e1", ["high"] * 3)
    await run_worker(store, nats_server.url)
    service = _service(store)
    await service.decide("t1", "e1", 1, "false_positive", "looked benign", by=ANA)
    await service.reopen("t1", "e1", 1, "new evidence contradicts it", by=ANA)
    await _append(store, "e1", ["high"], start=3)
    await run_worker(store, nats_server.url)
    assert "review" not in (await _assessments(store, "e1"))[-1]
