"""The final state read back from a real pipeline run, checked against its history of appends."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import run_worker

from eventstore import OutboundMessage
from riskpipe.chaos import APPEND, FinalState, HistoryWriter, Op, check, read_final

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def test_a_real_run_reads_back_clean_and_a_lost_ack_is_caught(
    store: EventStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Ten evidence and one poison through a real worker: every invariant of the data holds.

    Then the history claims an acknowledged append the stream does not hold:
    the same final state now shows a lost evidence.
    """
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        await _run(history, store, nats_server)
    final = await read_final(store, max_deliver=5)
    assert len(final.evidence) == 11
    assert sorted(e.evidence for e in final.assessments()) == list(range(1, 11))
    assert [(e.evidence, e.delivery_count) for e in final.dead_letters()] == [(11, 1)]
    assert {rec.entity for rec in final.evidence} == {"t1.ent-0", "t1.ent-1", "t1.ent-2"}
    assert all(rec.partition is not None for rec in final.evidence)
    assert final.foreign == []
    final.dump(tmp_path / "final")  # what a kept run leaves: checked again without a server
    assert FinalState.load(tmp_path / "final") == final
    report = check(history.ops, final)
    assert set(report.violated()) == {"bounded-redelivery"}  # no redelivery counts recorded

    ops = [
        *history.ops,
        Op(time.time(), "p1", APPEND, "invoke", {"msg_id": "ghost", "expect": "assess"}),
        Op(time.time(), "p1", APPEND, "ok", {"msg_id": "ghost", "sequence": 12}),
    ]
    violated = check(ops, final).violated()
    assert [v.message for v in violated["no-lost-evidence"]] == [
        "append of 'ghost' was acknowledged but is not stored"
    ]


async def _run(history: HistoryWriter, store: EventStore, nats_server: NatsServer) -> None:
    for n in range(10):
        event = evidence(f"e{n}", entity=f"ent-{n % 3}", severity="high")
        history.record("p1", APPEND, "invoke", msg_id=event.msg_id, expect="assess")
        result = await store.append(event)
        history.record(
            "p1", APPEND, "ok", msg_id=event.msg_id, sequence=result.sequence, duplicate=False
        )
    history.record("p1", APPEND, "invoke", msg_id="poison:1", expect="dead-letter")
    result = await store.append_unchecked("evidence", "t1", "ent-0", b"{oops", msg_id="poison:1")
    history.record("p1", APPEND, "ok", msg_id="poison:1", sequence=result.sequence)
    await run_worker(store, nats_server.url)


async def test_a_message_on_the_risk_stream_that_no_worker_wrote_is_foreign(
    store: EventStore,
) -> None:
    """Not an assessment (here, not even an event): listed, and a security violation."""
    acked = await store.client.publisher.publish(
        OutboundMessage("rp.risk.t1.ent-0", b"{}", {"Nats-Msg-Id": "forged-1"})
    )
    await acked
    final = await read_final(store)
    assert final.foreign == [(1, "forged-1")]
    violated = check([], final).violated()
    assert [v.message for v in violated["security"]] == [
        "the risk stream holds a message no worker wrote: sequence 1, id 'forged-1'"
    ]
