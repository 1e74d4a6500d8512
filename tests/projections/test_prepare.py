"""A fetched batch's evidence is decoded in one pass before it is handed out (``prepare``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from structlog.testing import capture_logs
from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker

from analyzers import AnalyzerConfig
from eventstore import Delivery
from projections.risk import RiskProjection
from riskpipe.worker import utc_now

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pytest

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _publish(store: EventStore, count: int) -> None:
    events = [evidence(f"p{n}", entity=f"e{n % 9}", minute=n) for n in range(count)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]


async def test_each_evidence_is_decoded_once_in_its_batch_and_not_again_when_handled(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler takes the event its batch's ``prepare`` decoded: one decode per evidence."""
    await _publish(store, 60)
    decode = store.schemas.decode
    decoded: list[int] = []

    def counted(payload: bytes, **options: Any) -> Any:
        decoded.append(len(payload))
        return decode(payload, **options)

    monkeypatch.setattr(store.schemas, "decode", counted)
    worker = await run_worker(store, nats_server.url, review=False)
    check_invariants(await read_streams(store))
    assert worker.outcomes["assessed"] == 60
    assert len(decoded) == 60, "decoded again when handled: prepare's work was not used"
    # nothing is kept once handled: what prepare made lives as long as its message in flight
    assert all(not runner._prepared for runner in worker.runners.values())  # noqa: SLF001


async def test_a_prepare_that_fails_costs_the_batch_its_head_start_and_loses_nothing(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in ``prepare`` is logged once per batch; every message is handled without it."""
    await _publish(store, 40)

    def broken(_self: RiskProjection, _deliveries: Sequence[Delivery]) -> list[object]:
        raise RuntimeError("a bug in prepare")

    monkeypatch.setattr(RiskProjection, "prepare", broken)
    with capture_logs() as logs:
        worker = await run_worker(store, nats_server.url, review=False)
    streams = await read_streams(store)
    check_invariants(streams)
    assert sum(len(a) for a in streams.assessments.values()) == 40
    assert worker.outcomes["assessed"] == 40
    failed = [line for line in logs if line["event"] == "projection.prepare_failed"]
    assert failed, "the failure is logged"
    assert all(line["projection"] == "risk" for line in failed)
    # nothing is kept once handled: what prepare made lives as long as its message in flight
    assert all(not runner._prepared for runner in worker.runners.values())  # noqa: SLF001


async def test_a_prepare_that_skips_a_delivery_pairs_no_result_with_the_wrong_message(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results that do not match the batch one to one are not used at all: nothing misassessed."""
    await _publish(store, 40)
    prepare = RiskProjection.prepare

    def short(self: RiskProjection, deliveries: Sequence[Delivery]) -> list[object]:
        return list(prepare(self, deliveries))[1:]  # the first delivery's result left out

    monkeypatch.setattr(RiskProjection, "prepare", short)
    with capture_logs() as logs:
        worker = await run_worker(store, nats_server.url, review=False)
    streams = await read_streams(store)
    check_invariants(streams)
    assert sum(len(a) for a in streams.assessments.values()) == 40
    assert worker.outcomes["assessed"] == 40
    for seq, (assessment,) in streams.assessments.items():
        event = streams.evidence[seq]
        assert event is not None
        assert assessment["evidence"]["id"] == event.id, f"evidence {seq} scored as another"
    failed = [line for line in logs if line["event"] == "projection.prepare_failed"]
    assert failed, "the mismatch is logged"
    assert all("results for" in line["error"] for line in failed)


async def test_prepare_leaves_out_what_does_not_decode_for_the_handler_to_refuse(
    store: EventStore,
) -> None:
    """Only evidence that decodes is prepared; the rest is decoded again, and refused, when handled.

    The refusal is the handler's, with its error and dead letter, as without
    ``prepare`` (see test_risk_pipeline's poison).
    """
    await _publish(store, 2)
    await store.append_unchecked("evidence", "t1", "e1", b"{not json", msg_id="poison")
    deliveries = [
        Delivery(
            subject=rec.subject,
            data=rec.payload,
            headers=rec.headers,
            stream=rec.stream,
            stream_seq=rec.sequence,
            consumer_seq=rec.sequence,
            num_delivered=1,
            num_pending=0,
            stored_at=rec.stored_at,
            reply="",
            header_block=rec.header_block,
        )
        async for rec in store.read_all(stream=store.config.stream_for("evidence"))
    ]
    projection = RiskProjection(store, config=AnalyzerConfig(), clock=utc_now)
    prepared = projection.prepare(deliveries)
    assert len(prepared) == len(deliveries) == 3
    assert [p is None for p in prepared] == [False, False, True]
    assert [p.event.id for p in prepared if p is not None] == ["p0", "p1"]
