"""Which partitions still hold unhandled evidence up to a sequence: a shared batch run's end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import run_worker

from eventstore import partition_of
from projections import handled_floor, undrained_partitions

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def test_undrained_partitions_until_handled_and_new_evidence_only_past_its_end(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Partitions with evidence and no consumer are undrained; empty ones never are.

    Once a worker handled everything, none is undrained through that end;
    evidence appended later is undrained only through a later end.
    """
    entities = [f"e{n}" for n in range(5)]
    for n, entity in enumerate(entities):
        await store.append(evidence(f"a{n}", entity=entity))
    holding = {partition_of("t1", e, store.config.partitions) for e in entities}
    end = 5
    assert await undrained_partitions(store, "risk", end, source="evidence") == holding
    assert len(holding) < store.config.partitions, "some partitions are empty"
    assert await undrained_partitions(store, "risk", 0, source="evidence") == frozenset()

    await run_worker(store, nats_server.url)
    assert await undrained_partitions(store, "risk", end, source="evidence") == frozenset()
    assert await handled_floor(store, "risk", source="evidence") == end

    late = await store.append(evidence("late", entity="e0"))
    assert await undrained_partitions(store, "risk", end, source="evidence") == frozenset()
    assert await undrained_partitions(store, "risk", late.sequence, source="evidence") == {
        partition_of("t1", "e0", store.config.partitions)
    }
