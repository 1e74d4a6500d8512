"""Explain: an entity's timeline up to a moment, the level in force then, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.pipeline import run_worker

from projections import DeadLetterQueue
from projections.audit import InvalidScopeError, explain

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

SEVERITIES = ("low", "low", "low", "critical", "critical", "critical", "critical")


async def _escalate(store: EventStore, url: str) -> None:
    for i, severity in enumerate(SEVERITIES):
        await store.append(evidence(f"s{i}", minute=i, severity=severity, pattern=f"p{i % 3}"))
        await store.append(evidence(f"o{i}", entity="other", minute=i))
    await run_worker(store, url)


async def test_a_past_sequence_shows_the_level_of_that_moment(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Cut before and at the first level change, the current level is the one in force then."""
    await _escalate(store, nats_server.url)
    whole = await explain(store, "t1", "e1")
    change = whole.level_changes[0]
    assert change.assessment is not None
    raised = change.assessment.data.assessment
    before = await explain(store, "t1", "e1", seq=change.sequence - 1)
    at_change = await explain(store, "t1", "e1", seq=change.sequence)
    assert before.current is not None
    assert at_change.current is not None
    assert before.current.data.assessment.level == raised.previous_level
    assert at_change.current.data.assessment.level == raised.level != raised.previous_level
    assert [e.sequence for e in at_change.timeline] == [
        e.sequence for e in whole.timeline if e.sequence <= change.sequence
    ]
    final = whole.current
    assert final is not None
    assert final.data.assessment.level == "critical"


async def test_a_past_time_cuts_at_the_evidence_stored_by_then(
    nats_server: NatsServer, store: EventStore
) -> None:
    """With a time, the timeline ends at the last evidence stored at or before it."""
    await _escalate(store, nats_server.url)
    whole = await explain(store, "t1", "e1")
    third = whole.timeline[2]
    cut = await explain(store, "t1", "e1", at=third.stored_at)
    assert [e.sequence for e in cut.timeline] == [e.sequence for e in whole.timeline[:3]]
    assert cut.current is not None
    assert third.assessment is not None
    assert cut.current.sequence == third.assessment.sequence


async def test_the_document_explains_the_current_score(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The JSON names the contributions behind the score, the recommendations and level changes."""
    await _escalate(store, nats_server.url)
    document = (await explain(store, "t1", "e1")).as_dict()
    current = document["current"]
    shares = [c["share"] for c in current["contributions"]]
    assert sum(shares) == pytest.approx(current["score"], abs=1e-9)
    assert shares == sorted(shares, key=abs, reverse=True)
    assert current["recommendations"]
    assert document["counts"] == {
        "evidence": 7, "assessed": 7, "dead_lettered": 0, "pending": 0, "missing": 0,
    }  # fmt: skip
    assert document["level_changes"][0]["from"] == "low"


async def test_dead_letters_and_operator_actions_are_on_the_timeline(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A dead letter shows its error, and once purged the purge recorded for it, as of the cut."""
    await store.append(evidence("ok1", minute=0))
    await store.append_unchecked("evidence", "t1", "e1", b"{broken", msg_id="poison:1")
    await run_worker(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    [letter] = await queue.list()
    timeline = (await explain(store, "t1", "e1")).timeline
    assert [e.outcome for e in timeline] == ["assessed", "dead_lettered"]
    assert timeline[1].dead_letter is not None
    assert timeline[1].dead_letter.error_type == "MalformedJSONError"
    assert timeline[1].error is not None
    await queue.purge(letter.sequence, actor="bob", reason="garbage")
    poison = (await explain(store, "t1", "e1")).timeline[1]
    assert poison.outcome == "dead_lettered", "a purged dead letter still accounts for its evidence"
    assert poison.dead_letter is not None
    assert (poison.dead_letter.purged, poison.dead_letter.dlq_sequence) == (True, None)
    assert [(a.kind, a.actor) for a in poison.actions] == [("purged", "bob")]
    earlier = (await explain(store, "t1", "e1", at=poison.stored_at)).timeline
    assert earlier[1].actions == (), "the purge came after that moment"


async def test_a_time_and_a_sequence_together_are_refused(store: EventStore) -> None:
    """Asking for both a time and a sequence is a scope error."""
    with pytest.raises(InvalidScopeError):
        await explain(store, "t1", "e1", seq=3, at=evidence("x").time)
