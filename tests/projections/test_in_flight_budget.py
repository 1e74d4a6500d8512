"""RISKPIPE_MAX_IN_FLIGHT is the worker's budget, shared by its partitions' runners."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from support.events import evidence
from support.pipeline import check_invariants, read_streams, run_worker

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
