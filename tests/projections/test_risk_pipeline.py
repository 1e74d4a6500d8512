"""The risk pipeline end to end, in process: exactly one effect per evidence, in entity order."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker

from analyzers import AnalyzerConfig
from eventstore import Delivery, EventStore, RawMessage, encode_event
from eventstore._jetstream._client import JetStreamClient
from eventstore.errors import NotProvisionedError
from projections import Message
from projections.risk import RiskProjection
from riskpipe.demo import POISON
from riskpipe.status import pipeline_status
from riskpipe.worker import utc_now

if TYPE_CHECKING:
    import pytest

    from riskpipe.server import NatsServer


async def _publish(store: EventStore, count: int, entities: int) -> None:
    events = [
        evidence(f"x{i}", entity=f"e{i % entities}", minute=i, severity=("low", "high")[i % 2])
        for i in range(count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _poison(store: EventStore) -> set[int]:
    seqs = set()
    for n, (tenant, entity, payload) in enumerate(POISON):
        seqs.add(
            (
                await store.append_unchecked(
                    "evidence", tenant, entity, payload, msg_id=f"poison:{n}"
                )
            ).sequence
        )
    return seqs


async def test_every_evidence_has_exactly_one_effect(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Valid evidence gets one assessment, poison one dead letter, entities keep order (I4-I6)."""
    await _publish(store, 200, 7)
    poison = await _poison(store)
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    check_invariants(streams, poison=poison)
    assert len(streams.assessments) == 200
    assert set(streams.dead_letters) == poison
    status = await pipeline_status(store, "risk")
    assert status.balanced
    assert (status.evidence, status.assessed, status.dead_lettered, status.pending) == (
        204,
        200,
        4,
        0,
    )


async def test_dead_letters_say_why(nats_server: NatsServer, store: EventStore) -> None:
    """Each kind of poison is dead-lettered once with its error class and original bytes."""
    poison = await _poison(store)
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    kinds = sorted(letters[0]["error_type"] for letters in streams.dead_letters.values())
    assert kinds == [
        "MalformedJSONError",
        "MalformedJSONError",
        "SchemaViolationError",
        "UnknownEventTypeError",
    ]
    originals = {letters[0]["payload_sha256"] for letters in streams.dead_letters.values()}
    assert len(originals) == len(poison)
    assert all(letters[0]["permanent"] for letters in streams.dead_letters.values())


async def test_rerunning_the_worker_adds_nothing(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A second run over the same stream finds nothing to do: no duplicate assessments."""
    await _publish(store, 50, 5)
    await run_worker(store, nats_server.url)
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    check_invariants(streams)
    assert sum(len(v) for v in streams.assessments.values()) == 50


async def test_a_restarted_worker_trusts_its_ack_floor(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart no entity is searched for unhandled evidence below the ack floor."""
    await _publish(store, 60, 6)
    await run_worker(store, nats_server.url)
    events = [evidence(f"y{i}", entity=f"e{i % 6}", minute=100 + i) for i in range(30)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    lookups: list[int] = []
    evidence_stream = store.config.stream_for("evidence")
    direct_get = JetStreamClient.direct_get

    async def counted(
        self: JetStreamClient, stream: str, seq: int, *, next_by_subject: str | None = None
    ) -> RawMessage | None:
        if stream == evidence_stream and next_by_subject is not None:
            lookups.append(seq)  # an entity's earlier evidence looked for
        return await direct_get(self, stream, seq, next_by_subject=next_by_subject)

    monkeypatch.setattr(JetStreamClient, "direct_get", counted)
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    check_invariants(streams)
    assert len(streams.assessments) == 90
    assert lookups == []


async def test_evidence_after_a_forged_risk_message_is_assessed_past_it(
    nats_server: NatsServer, store: EventStore
) -> None:
    """An entity whose last risk message is not an assessment goes on, fenced after it."""
    forged = {
        "f1": b"not json",
        "f2": encode_event(evidence("other", entity="f2"), None),  # an event, not an assessment
    }
    for entity, payload in forged.items():
        await store.append_unchecked("risk", "t1", entity, payload, msg_id=f"forged-{entity}")
    for e in forged:
        await store.append(evidence(f"f-{e}", entity=e))
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 2}
    assert worker.registry.get_sample_value("riskpipe_risk_foreign_messages_total") == 2
    assessed = {
        rec.subject: rec.sequence
        async for rec in store.read_all(stream=store.config.stream_for("risk"))
        if rec.event is not None
    }
    # each after the forged messages (1 and 2); partitions commit side by side
    assert sorted(assessed) == ["rp.risk.t1.f1", "rp.risk.t1.f2"]
    assert sorted(assessed.values()) == [3, 4]


async def test_redelivered_evidence_is_skipped_not_reassessed(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A new consumer replaying from the start (a lost ack) creates no second assessment."""
    await _publish(store, 30, 3)
    await run_worker(store, nats_server.url)
    for partition in range(store.config.partitions):
        with contextlib.suppress(NotProvisionedError):  # a partition without evidence
            await store.client.api(f"CONSUMER.DELETE.EVIDENCE.risk-{partition}")
        await store.kv(store.config.checkpoint_bucket).put(f"risk-{partition}", b'{"sequence": 0}')
    worker = await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    check_invariants(streams)
    skipped = worker.registry.get_sample_value(
        "riskpipe_projection_messages_total", {"projection": "risk", "outcome": "duplicate_skipped"}
    )
    assert skipped == 30


async def test_inbound_headers_never_reach_assessments(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Headers a producer set on evidence are not copied onto the assessment."""
    await store.append(
        evidence("h1"),
        headers={"X-Injected": "1", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
    )
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    assert len(streams.assessment_headers) == 1
    assert "X-Injected" not in streams.assessment_headers[0]


async def test_checkpoint_follows_the_ack_floor(nats_server: NatsServer, store: EventStore) -> None:
    """After a run the checkpoint is the last sequence; every sequence below has its effect."""
    await _publish(store, 40, 4)
    worker = await run_worker(store, nats_server.url)
    last_of: dict[int, int] = {}  # each partition's last evidence sequence
    async for record in store.read_all():
        last_of[int(record.subject.split(".")[2])] = record.sequence
    assert len(last_of) > 1, "the entities span several partitions"
    assert max(last_of.values()) == 40
    bucket = store.kv(store.config.checkpoint_bucket)
    for partition, runner in worker.runners.items():
        assert runner.checkpoint == last_of.get(partition, 0), partition
        entry = await bucket.get(f"risk-{partition}")
        if partition in last_of:
            assert entry is not None
            assert f'"sequence":{last_of[partition]}'.encode() in entry.value
        else:  # nothing to record
            assert entry is None or b'"sequence":0' in entry.value


async def test_poison_near_the_size_limit_is_dead_lettered(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A 60 KiB poison message fits in a dead letter (base64 and all), once."""
    payload = b'{"garbage": "' + b"x" * 60_000 + b'"'
    await store.append_unchecked("evidence", "t1", "big", payload, msg_id="poison:big")
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    check_invariants(streams, poison={1})
    assert streams.dead_letters[1][0]["error_type"] == "MalformedJSONError"


async def test_assessments_are_exactly_what_validated_models_encode_to(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Each stored assessment is byte for byte what its validated envelope and data encode to.

    The projection builds them from known-valid values without validating again.
    """
    await _publish(store, 60, 4)
    await run_worker(store, nats_server.url)
    checked = 0
    async for rec in store.read_all(stream=store.config.stream_for("risk")):
        assert rec.event is not None, rec.error
        data = store.schemas.typed_data(rec.event)
        assert encode_event(rec.event, data) == rec.payload
        checked += 1
    assert checked == 60


async def test_a_replica_behind_does_not_make_earlier_evidence_skipped(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up, a "none" from a replica that lacks the latest messages is not believed.

    Any replica of a clustered stream answers a direct get. One still catching
    up has neither the entity's earlier evidence nor the message being handled:
    the stream's leader is asked, and the earlier evidence is assessed first,
    not skipped for good behind the cursor.
    """
    first, second = await store.append_many(
        [evidence("lag-1", entity="lag"), evidence("lag-2", entity="lag", minute=1)]
    )
    assert not isinstance(first, Exception)
    assert not isinstance(second, Exception)
    evidence_stream = store.config.stream_for("evidence")
    direct_get = store.client.direct_get
    behind: list[int] = []

    async def replica_behind(stream: str, seq: int, **kwargs: Any) -> RawMessage | None:
        if stream == evidence_stream:
            behind.append(seq)
            return None  # as a replica that has not received them yet answers
        return await direct_get(stream, seq, **kwargs)

    monkeypatch.setattr(store.client, "direct_get", replica_behind)
    raw = await store.client.leader_get(evidence_stream, second.sequence)
    assert raw is not None
    delivery = Delivery(
        subject=raw.subject, data=raw.data, headers=raw.headers, stream=evidence_stream,
        stream_seq=raw.seq, consumer_seq=2, num_delivered=1, num_pending=0,
        stored_at=raw.time, reply="", header_block=raw.header_block,
    )  # fmt: skip
    projection = RiskProjection(store, config=AnalyzerConfig(), clock=utc_now)
    result = await projection.handle(Message("risk", delivery, "t1", "lag", max_deliver=5))
    assert behind, "the catch-up never asked a replica"
    assert result.kind == "commit"
    answered = [output.data.cursor for output in result.outputs]  # type: ignore[union-attr]
    assert answered == [first.sequence, second.sequence]
