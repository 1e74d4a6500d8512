"""The pipeline benchmark's baseline: a plain loop doing the worker's work, against a real server.

It must do the same work as the worker (the same scores, one result per
evidence, each input acknowledged after its result is stored), or the ratio
``bench pipeline`` prints would compare unlike things.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from support.pipeline import run_worker

from analyzers import AnalyzerConfig
from eventstore.baselines import raw_projection_loop
from riskpipe.bench import assessing_handler
from riskpipe.demo import synthetic_evidence

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _results(store: EventStore) -> dict[int, float]:
    """Evidence sequence to score, from the baseline's results."""
    found = {}
    async for rec in store.read_all(stream="BENCH_RAW_RESULTS"):
        msg_id = rec.headers["Nats-Msg-Id"]
        assert msg_id.startswith("risk-")
        found[int(msg_id.removeprefix("risk-"))] = orjson.loads(rec.payload)["score"]
    return found


async def test_the_plain_loop_scores_as_the_worker_does(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Small batches and a small window, so the loop tops its pulls up and waits on PubAcks."""
    events = synthetic_evidence(60, source="baseline", entities=7)
    await store.append_many(events)
    done = await raw_projection_loop(
        nats_server.url, stream="EVIDENCE", filter_subject="rp.evidence.>", count=60,
        handle=assessing_handler(AnalyzerConfig()), batch=8, window=3,
    )  # fmt: skip
    assert done == 60
    plain = await _results(store)
    assert sorted(plain) == list(range(1, 61))

    await run_worker(store, nats_server.url)
    worker = {}
    async for rec in store.read_all(stream="RISK"):
        assert rec.event is not None
        data = rec.event.data or {}
        worker[data["evidence"]["sequence"]] = data["assessment"]["score"]
    assert worker == plain


async def test_the_loop_carries_on_where_it_stopped(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A second call handles only the new evidence; every input ends acknowledged."""
    handle = assessing_handler(AnalyzerConfig())
    for n, count in enumerate((20, 5)):
        await store.append_many(synthetic_evidence(count, source=f"round-{n}", entities=3))
        assert await raw_projection_loop(
            nats_server.url, stream="EVIDENCE", filter_subject="rp.evidence.>", count=count,
            handle=handle, batch=4, window=2,
        ) == count  # fmt: skip
    assert len(await _results(store)) == 25
    info = await store.client.stream_info("EVIDENCE")
    assert info is not None
    consumer = await store.client.api("CONSUMER.INFO.EVIDENCE.bench-raw")
    assert consumer["ack_floor"]["stream_seq"] == info["state"]["last_seq"] == 25
    assert consumer["num_ack_pending"] == 0
