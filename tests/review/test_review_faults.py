"""The review projection under a crash: kill -9 mid-stream, restart, one case per entity."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, read_streams, wait_for_messages

from projections.review import OPENED

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

FAST = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_BATCH": "16",
}


async def test_kill_9_mid_stream_leaves_exactly_one_case_per_risky_entity(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Both projections crash mid-stream; after a restart every risky entity has one case.

    120 entities, each with 6 critical evidence (so each is assessed high or
    above 4 times or more): the review projection sees every one of those
    assessments, opens on the first and joins the rest, across the crash.
    """
    events = [
        evidence(f"x{n}-{e}", entity=f"e{e}", severity="critical", pattern="malware", minute=n)
        for n in range(6)
        for e in range(120)
    ]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    first = WorkerProcess(nats_server.url, env=FAST)
    first.start()
    await wait_for_messages(store, "REVIEW", 20)
    first.kill()
    crashed_at = int((await store.stream_state("REVIEW"))["messages"])
    second = WorkerProcess(nats_server.url, env=FAST, until_idle=True)
    second.start()
    assert await asyncio.to_thread(second.wait, 120) == 0
    check_invariants(await read_streams(store))
    opened = collections.Counter(
        [
            (rec.event.tenant, rec.event.subject)
            async for rec in store.read_all(stream="REVIEW")
            if rec.event is not None and rec.event.type == OPENED
        ]
    )
    assert crashed_at < 120, "the kill should land mid-stream"
    assert len(opened) == 120, "every risky entity has a case"
    assert set(opened.values()) == {1}, {key: n for key, n in opened.items() if n > 1}
