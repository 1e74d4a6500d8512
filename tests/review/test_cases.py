"""Cases as people act on them: every action one fenced event, and the fold of them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from analyzers import RiskLevel
from eventstore import CloudEvent
from projections.review import (
    OPENED,
    Actor,
    AssessmentRef,
    CaseOpenedData,
    ReviewService,
    read_cases,
)
from projections.review.errors import (
    CaseConflictError,
    CaseNotFoundError,
    CaseStateError,
    StaleCaseError,
)

if TYPE_CHECKING:
    from eventstore import EventStore

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ANA = Actor(name="ana", role="reviewer")
BOB = Actor(name="bob", role="reviewer")


def _clock() -> datetime:
    return NOW


async def _open(store: EventStore, entity: str = "e1", *, number: int = 1, seq: int = 7) -> int:
    """Open case ``number`` as the review projection would; the entity's version after it."""
    data = CaseOpenedData(
        case=number,
        triggers=("level",),
        assessment=AssessmentRef(
            stream="RISK", sequence=seq, level=RiskLevel.HIGH, score=0.8, confidence=0.9
        ),
        policy_version="1",
        by=Actor(name="projection:review", role="system"),
    )
    event = CloudEvent(
        id=f"RISK-{seq}", source="riskpipe/projection/review", type=OPENED, subject=entity,
        tenant="t1", time=NOW,
    )  # fmt: skip
    return (await store.append(event, data=data)).version


async def test_a_case_lives_through_assign_comment_decide_and_reopen(store: EventStore) -> None:
    """Each action is one event; the fold gives status, assignee, decision and timeline."""
    await _open(store)
    service = ReviewService(store, clock=_clock)
    case, _ = await service.assign("t1", "e1", 1, "ana", by=ANA)
    assert (case.status, case.assignee) == ("open", "ana")
    await service.comment("t1", "e1", 1, "  looks like a real takeover  ", by=ANA)
    case, version = await service.decide(
        "t1", "e1", 1, "confirmed", "two factors reset", by=ANA, level=RiskLevel.CRITICAL
    )
    assert case.status == "decided"
    assert case.decision is not None
    assert (case.decision.outcome, case.decision.level, case.decision.by) == (
        "confirmed", RiskLevel.CRITICAL, ANA,
    )  # fmt: skip
    reread = await read_cases(store, "t1", "e1")
    assert reread.version == version
    assert [entry.type.split(".")[2] for entry in reread.cases[0].timeline] == [
        "opened", "assigned", "commented", "decided",
    ]  # fmt: skip
    assert reread.cases[0].timeline[2].data.text == "looks like a real takeover"  # type: ignore[attr-defined]
    case, _ = await service.reopen("t1", "e1", 1, "new evidence came in", by=BOB)
    assert (case.status, case.decision) == ("open", None)


async def test_of_two_reviewers_deciding_at_once_exactly_one_wins(store: EventStore) -> None:
    """Both read the same version; the fence lets one append, the other learns it lost."""
    await _open(store)
    service = ReviewService(store, clock=_clock)
    results = await asyncio.gather(
        *(
            service.decide("t1", "e1", 1, outcome, "seen it", by=who)
            for outcome, who in (("confirmed", ANA), ("false_positive", BOB))
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], CaseConflictError | CaseStateError)
    decided = [
        rec async for rec in store.read("t1", "e1", category="review")
        if rec.event is not None and rec.event.type.endswith("decided.v1")
    ]  # fmt: skip
    assert len(decided) == 1


async def test_a_stale_version_is_refused_and_nothing_is_written(store: EventStore) -> None:
    """``if_version`` is what an HTTP If-Match carries: an old one gets the current one back."""
    seen = await _open(store)
    service = ReviewService(store, clock=_clock)
    _, now = await service.comment("t1", "e1", 1, "first look", by=ANA)
    with pytest.raises(StaleCaseError, match=f"at version {now}, not {seen}") as stale:
        await service.decide("t1", "e1", 1, "false_positive", "benign", by=BOB, if_version=seen)
    assert not isinstance(stale.value, CaseConflictError)
    assert (await read_cases(store, "t1", "e1")).version == now
    case, _ = await service.decide(
        "t1", "e1", 1, "false_positive", "benign", by=BOB, if_version=now
    )
    assert case.status == "decided"


async def test_actions_that_do_not_fit_the_case_are_refused(store: EventStore) -> None:
    """Unknown cases, deciding twice, reopening an open case, an empty reason."""
    service = ReviewService(store, clock=_clock)
    with pytest.raises(CaseNotFoundError, match="no case for entity e1 of tenant t1"):
        await service.case("t1", "e1")
    await _open(store)
    with pytest.raises(CaseNotFoundError, match="no case 2"):
        await service.decide("t1", "e1", 2, "confirmed", "x", by=ANA)
    with pytest.raises(CaseStateError, match="is open: it cannot be reopened"):
        await service.reopen("t1", "e1", 1, "why not", by=ANA)
    with pytest.raises(ValidationError, match="reason"):
        await service.decide("t1", "e1", 1, "confirmed", "   ", by=ANA)
    await service.decide("t1", "e1", 1, "confirmed", "real", by=ANA)
    with pytest.raises(CaseStateError, match="is decided: it cannot be decided"):
        await service.decide("t1", "e1", 1, "false_positive", "changed my mind", by=BOB)
    with pytest.raises(CaseStateError, match="is decided: it cannot be assigned"):
        await service.assign("t1", "e1", 1, "bob", by=BOB)
    assert len((await read_cases(store, "t1", "e1")).cases[0].timeline) == 2


async def test_an_escalation_keeps_the_case_open_for_someone_else(store: EventStore) -> None:
    """``escalated`` records the decision and leaves the case open; a later one closes it."""
    await _open(store)
    service = ReviewService(store, clock=_clock)
    case, _ = await service.decide("t1", "e1", 1, "escalated", "needs fraud team", by=ANA)
    assert case.status == "escalated"
    assert (await read_cases(store, "t1", "e1")).open_case is not None
    case, _ = await service.decide("t1", "e1", 1, "confirmed", "fraud team agrees", by=BOB)
    assert case.status == "decided"


async def test_the_fold_ignores_events_of_cases_that_never_opened(store: EventStore) -> None:
    """A decision naming a case that does not exist changes nothing but the version."""
    version = await _open(store)
    cases = await read_cases(store, "t1", "e1")
    assert cases.version == version
    assert cases.case(2) is None
    cases.apply(OPENED, cases.cases[0].opened.model_copy(update={"case": 3}), version + 5, NOW)
    assert len(cases.cases) == 1
    assert cases.version == version + 5
    assert NOW - timedelta(0) == cases.cases[0].opened_at
