"""Replay over real pipeline runs: identical, side-effect free, scoped, pending and missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from support.events import evidence
from support.pipeline import demo_run, run_worker
from support.reputation_server import Reply, ReputationServer

from projections import DeadLetterQueue, partition_views
from projections.audit import ReplayScope, explain, export_rows, replay

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

DOWN = Reply(status=503, body=b'{"error": "maintenance"}')
UP = Reply(status=200, body=b'{"modifier": 0.2}')


async def _snapshot(store: EventStore) -> dict[str, Any]:
    """Every stream's state and the risk consumers' positions."""
    names = [config["name"] for config in store.config.stream_configs()]
    positions = ("delivered", "ack_floor", "num_pending", "num_ack_pending", "num_redelivered")
    consumers = {}
    for view in await partition_views(store, "risk", source="evidence"):
        info = view.info or {}
        consumers[view.consumer] = {key: info.get(key) for key in positions}
    return {
        "streams": {name: await store.stream_state(name) for name in names},
        "consumers": consumers,
    }


async def test_replay_of_a_real_run_is_identical(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Every assessment of a real run re-derives byte-identically; poison is dead-lettered."""
    await demo_run(store, nats_server.url)
    calls: list[tuple[int, int]] = []
    report = await replay(store, progress=lambda done, total: calls.append((done, total)))
    assert report.ok, report.findings[:3]
    assert calls[-1] == (304, 304)
    totals = report.totals
    assert (totals.evidence, totals.checked, totals.identical) == (304, 300, 300)
    assert (totals.dead_lettered, totals.missing, totals.pending, totals.extra) == (4, 0, 0, 0)
    assert report.findings == []
    assert sum(e.counts.evidence for e in report.entities.values()) == 304


async def test_audit_tools_publish_and_acknowledge_nothing(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Replay, what-if, explain and export leave every stream and the risk consumer as they were."""
    await demo_run(store, nats_server.url)
    before = await _snapshot(store)
    await replay(store)
    await replay(store, jobs=2)
    await replay(store, what_if=True)
    await explain(store, "acme", "user-carol", seq=150)
    assert len([row async for row in export_rows(store, "globex")]) > 0
    after = await _snapshot(store)
    assert after == before
    assert {c["num_pending"] for c in before["consumers"].values()} <= {0, None}


async def test_scoped_replays_verify_their_slice(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A tenant, an entity, or a later start (seeded from the recorded state) all verify."""
    await demo_run(store, nats_server.url)
    carol = await replay(store, scope=ReplayScope("acme", "user-carol"))
    assert carol.ok
    assert set(carol.entities) == {("acme", "user-carol")}
    assert carol.totals.identical == carol.totals.evidence > 0
    globex = await replay(store, scope=ReplayScope("globex"))
    assert globex.ok
    assert {tenant for tenant, _ in globex.entities} == {"globex"}
    tail = await replay(store, scope=ReplayScope(from_seq=150, until_seq=290))
    assert tail.ok, tail.findings[:3]
    assert (tail.totals.evidence, tail.totals.identical) == (141, 141)


async def test_unprocessed_evidence_is_pending_not_missing(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Evidence the worker has not reached yet is reported as pending and does not fail."""
    await demo_run(store, nats_server.url, events=40)
    for i in range(5):
        await store.append(evidence(f"late{i}", tenant="acme", entity="user-late", minute=i))
    report = await replay(store)
    assert report.ok
    assert (report.totals.pending, report.totals.missing) == (5, 0)


async def test_evidence_without_any_effect_is_missing(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A dead letter deleted without a purge record leaves its evidence missing: replay fails."""
    poison = await demo_run(store, nats_server.url, events=20)
    letter = (await DeadLetterQueue(store, "risk").list())[0]
    await store.delete(store.config.stream_for("dlq"), letter.sequence)
    report = await replay(store)
    assert not report.ok
    assert report.totals.missing == 1
    [finding] = report.findings
    assert finding.kind == "missing"
    assert finding.evidence_sequence == letter.data.sequence
    assert finding.evidence_sequence in poison


def _enriched(reputation: ReputationServer, **overrides: object) -> dict[str, object]:
    return {
        "enrichment_url": reputation.url,
        "enrichment_attempts": 1,
        "enrichment_fail_max": 100,
        "enrichment_reset_seconds": 0.3,
        "retry_attempts": 1,
        "max_deliver": 2,
        "redelivery_backoff_seconds": (0.1,),
        **overrides,
    }


async def test_enrichment_and_dlq_replays_reuse_what_was_recorded(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """Enriched assessments and re-sent dead letters verify without calling the enricher."""
    reputation.script(DOWN)
    await store.append(evidence("d1", minute=0))
    await run_worker(store, nats_server.url, **_enriched(reputation))
    queue = DeadLetterQueue(store, "risk")
    [letter] = await queue.list()
    reputation.script(UP)
    new_seq = await queue.replay(letter.sequence, actor="alice", reason="service fixed")
    await store.append(evidence("d2", minute=1))
    await run_worker(store, nats_server.url, **_enriched(reputation))
    calls = len(reputation.requests)
    report = await replay(store)
    assert report.ok, report.findings
    assert (report.totals.identical, report.totals.dead_lettered) == (2, 1)
    assert len(reputation.requests) == calls, "replay never calls the enricher"
    timeline = (await explain(store, "t1", "e1")).timeline
    replayed = next(entry for entry in timeline if entry.sequence == new_seq)
    assert replayed.replay_of == letter.data.sequence
    assert replayed.assessment is not None
    assert replayed.assessment.data.assessment.enrichment is not None
    assert [a.kind for a in timeline[0].actions] == ["replayed"]


async def test_degraded_assessments_verify(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """Conservative assessments made while enrichment was down re-derive identically."""
    reputation.script(DOWN)
    for i in range(4):
        await store.append(evidence(f"g{i}", minute=i, severity=("low", "critical")[i % 2]))
    settings = _enriched(
        reputation, enrichment_fail_max=1, degraded_mode=True, enrichment_reset_seconds=60
    )
    await run_worker(store, nats_server.url, **settings)
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.identical == 4
    timeline = (await explain(store, "t1", "e1")).timeline
    assert all(e.assessment and e.assessment.data.assessment.degraded for e in timeline)
