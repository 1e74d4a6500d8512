"""RISKPIPE_MAX_IN_FLIGHT is the worker's budget, shared by its partitions' runners."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker

from riskpipe.chaos._enricher import ALWAYS, FlakyEnricher, transient_id
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def test_each_partition_holds_its_share_of_the_worker_budget(
    nats_server: NatsServer, store: EventStore
) -> None:
    """16 partitions share 4,096 as 256 each; a budget under P still gives each one message."""
    assert store.config.partitions == 16
    for budget, share in ((4096, 256), (100, 6), (5, 1)):
        settings = Settings(nats_url=nats_server.url, max_in_flight=budget)
        worker = Worker(store, settings, CollectorRegistry())
        assert worker.runner_for(3).settings.max_in_flight == share, budget


async def test_a_budget_of_one_message_per_partition_still_assesses_everything_in_order(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The smallest share refills one message at a time, and loses or reorders nothing."""
    events = [evidence(f"b{i}", entity=f"e{i % 7}", minute=i) for i in range(300)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    worker = await run_worker(store, nats_server.url, max_in_flight=16, batch=64)
    assert sum(r.settings.max_in_flight for r in worker.runners.values()) == len(worker.runners)
    streams = await read_streams(store)
    check_invariants(streams)
    assert sum(len(a) for a in streams.assessments.values()) == 300


async def test_messages_held_behind_a_failing_one_do_not_starve_its_redelivery(
    nats_server: NatsServer, single_partition_store: EventStore
) -> None:
    """An entity's later messages wait behind its failing one without using up the budget.

    Held messages fill the runner; if they counted against its budget, it would
    fetch no more, and the failing message (whose redelivery only a fetch
    brings) would come back only when the held ones are let go as stale
    (after twice the ack wait), one at a time: every entity stalls.
    """
    store = single_partition_store
    enricher = FlakyEnricher()
    await enricher.start()
    events = [evidence(transient_id(ALWAYS, "first"), entity="stuck")]
    events += [evidence(f"held-{n}", entity="stuck", minute=n + 1) for n in range(12)]
    events += [evidence(f"free-{n}", entity=f"free-{n % 3}", minute=n) for n in range(12)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    try:
        async with asyncio.timeout(30):  # stalled, it would take 12 x 2 x 30 s
            await run_worker(
                store,
                nats_server.url,
                max_in_flight=4,
                batch=4,
                max_deliver=3,
                retry_attempts=1,
                redelivery_backoff_seconds=(0.1,),
                enrichment_url=enricher.url,
                enrichment_attempts=1,
                enrichment_fail_max=1000,
            )
    finally:
        await enricher.stop()
    streams = await read_streams(store)
    check_invariants(streams, poison=[1])
    assert len(streams.dead_letters[1]) == 1
    assert sum(len(a) for a in streams.assessments.values()) == len(events) - 1
