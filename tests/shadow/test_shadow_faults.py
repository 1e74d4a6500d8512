"""A worker running a shadow projection killed with -9 mid-stream: still one assessment each."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from shadow_world import SENSITIVE, VERSION, propose_sensitive, stored
from support.events import evidence
from support.pipeline import WorkerProcess, wait_for_messages

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

FAST = {
    "RISKPIPE_ACK_WAIT_SECONDS": "2",
    "RISKPIPE_FETCH_TIMEOUT": "0.3",
    "RISKPIPE_DRAIN_TIMEOUT_SECONDS": "5",
    "RISKPIPE_BATCH": "20",
}
EVIDENCE = 2_000


async def test_kill_9_mid_stream_then_restart_leaves_one_shadow_assessment_per_evidence(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Killed while both projections write, restarted as a batch run: exactly once, in order."""
    await propose_sensitive(store)
    events = [evidence(f"k{i}", entity=f"e{i % 100}", minute=i) for i in range(EVIDENCE)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    worker = WorkerProcess(nats_server.url, env=FAST, args=("--shadow", VERSION))
    worker.start()
    try:
        await wait_for_messages(store, "SHADOW", 150)
        worker.kill()
    finally:
        worker.kill()
    at_kill = int((await store.stream_state("SHADOW"))["messages"])
    assert at_kill < EVIDENCE, "killed mid-stream (more evidence, or a smaller batch, if not)"

    again = WorkerProcess(nats_server.url, env=FAST, until_idle=True, args=("--shadow", VERSION))
    again.start(wait=False)
    assert await asyncio.to_thread(again.wait, 120) == 0

    for stream in ("RISK", "SHADOW"):
        messages = await stored(store, stream)
        sequences = collections.Counter(d["evidence"]["sequence"] for _, _, d in messages)
        assert sorted(sequences) == list(range(1, EVIDENCE + 1)), stream
        assert set(sequences.values()) == {1}, f"{stream}: an evidence assessed twice"
        by_subject: dict[str, list[int]] = collections.defaultdict(list)
        for subject, _, data in messages:
            by_subject[subject].append(data["evidence"]["sequence"])
        assert all(s == sorted(s) for s in by_subject.values()), f"{stream}: out of order"
    shadow = await stored(store, "SHADOW")
    assert {d["assessment"]["config_fingerprint"] for _, _, d in shadow} == {
        SENSITIVE.fingerprint()
    }
