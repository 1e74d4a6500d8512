"""A flaky enrichment dependency: retries, dead letters, open breaker, degraded mode, replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker
from support.reputation_server import Reply, ReputationServer

from projections import DeadLetterQueue, ReplayRefusedError
from riskpipe.chaos._enricher import ALWAYS, FlakyEnricher, transient_id
from riskpipe.status import pipeline_status

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

DOWN = Reply(status=503, body=b'{"error": "maintenance"}')
UP = Reply(status=200, body=b'{"modifier": 0.2}')


def _settings(
    reputation: ReputationServer | FlakyEnricher, **overrides: object
) -> dict[str, object]:
    return {
        "enrichment_url": reputation.url,
        "enrichment_attempts": 1,
        "enrichment_timeout_seconds": 2.0,
        "enrichment_fail_max": 100,
        "enrichment_reset_seconds": 0.3,
        "retry_attempts": 1,
        "max_deliver": 3,
        "redelivery_backoff_seconds": (0.1,),
        **overrides,
    }


def _outcome(worker: object, outcome: str) -> float:
    value = worker.registry.get_sample_value(  # type: ignore[attr-defined]
        "riskpipe_projection_messages_total", {"projection": "risk", "outcome": outcome}
    )
    return value or 0.0


async def test_transient_failures_below_max_deliver_end_assessed(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """Two failed deliveries, then success on the third: one assessment, no dead letter."""
    reputation.script(DOWN, DOWN, UP)
    await store.append(evidence("t1"))
    worker = await run_worker(store, nats_server.url, **_settings(reputation))
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 1
    assert not streams.dead_letters
    assert len(reputation.requests) == 3
    assert reputation.deliveries == ["1", "2", "3"], "each call names its delivery"
    assert _outcome(worker, "retried") == 2
    assessment = streams.assessments[1][0]["assessment"]
    assert assessment["enrichment"] == {"provider": "reputation", "modifier": 0.2}


async def test_failures_beyond_max_deliver_are_dead_lettered_once(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """A dependency failing on every delivery: one dead letter after max_deliver, no hot loop."""
    reputation.script(DOWN)
    await store.append(evidence("t1"))
    await run_worker(store, nats_server.url, **_settings(reputation))
    streams = await read_streams(store)
    check_invariants(streams)
    letter = streams.dead_letters[1][0]
    assert letter["delivery_count"] == 3
    assert letter["error_type"] == "EnrichmentTransientError"
    assert letter["permanent"] is False
    assert letter["evidence_id"] == "t1"
    assert len(reputation.requests) == 3, "exactly one call per allowed delivery"


async def test_open_breaker_pauses_without_burning_deliveries(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """With the breaker open the worker pauses and holds the message; it resumes when it closes."""
    reputation.script(DOWN, DOWN, DOWN, DOWN, DOWN, DOWN, UP)
    await store.append(evidence("t1"))
    worker = await run_worker(
        store, nats_server.url, **_settings(reputation, enrichment_fail_max=2, max_deliver=3)
    )
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 1, "six failures, yet no dead letter: pauses burn nothing"
    assert not streams.dead_letters
    assert _outcome(worker, "paused") >= 1
    assert {runner.state for runner in worker.runners.values()} == {"stopped"}


async def test_degraded_mode_emits_flagged_conservative_assessments(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """In degraded mode an open breaker yields assessments flagged degraded instead of a pause."""
    reputation.script(DOWN)
    for i in range(3):
        await store.append(evidence(f"t{i}", minute=i))
    worker = await run_worker(
        store,
        nats_server.url,
        **_settings(
            reputation, enrichment_fail_max=1, degraded_mode=True, enrichment_reset_seconds=60
        ),
    )
    streams = await read_streams(store)
    check_invariants(streams)
    flags = [
        streams.assessments[seq][0]["assessment"]["degraded"] for seq in sorted(streams.assessments)
    ]
    assert flags == [True, True, True]
    assert _outcome(worker, "paused") == 0


async def test_dlq_replay_and_purge_leave_audit_events(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """A replayed dead letter becomes an assessment once the cause is fixed; purge removes one."""
    reputation.script(DOWN)
    await store.append(evidence("t1"))
    await store.append_unchecked("evidence", "t1", "e2", b"{broken", msg_id="poison:1")
    await run_worker(store, nats_server.url, **_settings(reputation))
    queue = DeadLetterQueue(store, "risk")
    letters = {letter.data.sequence: letter for letter in await queue.list()}
    assert set(letters) == {1, 2}
    reputation.script(UP)
    new_seq = await queue.replay(letters[1].sequence, actor="alice", reason="service fixed")
    with pytest.raises(ReplayRefusedError, match=f"as evidence sequence {new_seq}"):
        await queue.replay(letters[1].sequence, actor="alice")
    await queue.purge(letters[2].sequence, actor="bob", reason="garbage")
    await run_worker(store, nats_server.url, **_settings(reputation))
    streams = await read_streams(store)
    assessed = streams.assessments[new_seq][0]
    assert assessed["evidence"]["replay_of"] == 1
    assert assessed["evidence"]["id"] == "t1"
    remaining = await queue.list()
    assert [(x.sequence, x.status, x.replayed_as) for x in remaining] == [
        (letters[1].sequence, "replayed", new_seq)
    ]
    audit = [rec.event async for rec in store.read_all(stream="AUDIT") if rec.event is not None]
    assert [(e.type, (e.data or {})["actor"]) for e in audit] == [
        ("riskpipe.dlq.replay_started.v1", "alice"),
        ("riskpipe.dlq.replayed.v1", "alice"),
        ("riskpipe.dlq.purged.v1", "bob"),
    ]
    status = await pipeline_status(store, "risk")
    assert status.balanced, status


@pytest.mark.parametrize("later", [1, 3])
async def test_evidence_after_an_always_failing_one_is_assessed_not_dead_lettered(
    nats_server: NatsServer, store: EventStore, later: int
) -> None:
    """The entity's first evidence fails on every delivery; the ones after it are not its victims.

    Catching the entity up tries the failing evidence again inside each later
    message's delivery, so those fail with it; once the first is a dead letter,
    the later ones must be assessed, whatever their own delivery counts.
    """
    enricher = FlakyEnricher()
    await enricher.start()
    try:
        await store.append(evidence(transient_id(ALWAYS, "first"), entity="e1"))
        for n in range(later):
            await store.append(evidence(f"later-{n}", entity="e1", minute=n + 1))
        await store.append(evidence(transient_id(1, "other"), entity="e2"))
        settings = _settings(enricher, max_deliver=3) | {"enrichment_url": enricher.url}
        await run_worker(store, nats_server.url, **settings)
    finally:
        await enricher.stop()
    streams = await read_streams(store)
    check_invariants(streams)
    ids = {seq: event.id for seq, event in streams.evidence.items() if event is not None}
    assert [ids[seq] for seq in streams.dead_letters] == [transient_id(ALWAYS, "first")]
    later_ids = [f"later-{n}" for n in range(later)]
    assert sorted(ids[seq] for seq in streams.assessments) == sorted(
        [*later_ids, transient_id(1, "other")]
    )
    assert enricher.seen[transient_id(ALWAYS, "first")] >= 3


async def test_only_the_listed_patterns_are_enriched(
    nats_server: NatsServer, store: EventStore
) -> None:
    """RISKPIPE_ENRICHMENT_PATTERNS: the service is asked about those patterns' evidence only."""
    enricher = FlakyEnricher()
    await enricher.start()
    try:
        await store.append(evidence("login", pattern="failed_login_burst"))
        await store.append(evidence("travel", pattern="impossible_travel", minute=1))
        settings = _settings(enricher) | {
            "enrichment_url": enricher.url,
            "enrichment_patterns": ("impossible_travel",),
        }
        await run_worker(store, nats_server.url, **settings)
    finally:
        await enricher.stop()
    streams = await read_streams(store)
    check_invariants(streams)
    assert dict(enricher.seen) == {"travel": 1}
    by_id = {streams.evidence[seq].id: a for seq, (a,) in streams.assessments.items()}
    assert "enrichment" not in by_id["login"]["assessment"]
    assert by_id["travel"]["assessment"]["enrichment"] == {
        "provider": "reputation",
        "modifier": 0.0,
    }
