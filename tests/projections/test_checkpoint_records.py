"""A stored checkpoint is a claim to check: malformed, moved or stale ones are refused.

The worker's user (and, on the unauthenticated server, any client, or
nats-server itself when a message names the key as its ``Nats-Trace-Dest``)
can write anything under the checkpoint key. A worker and ``riskpipe status``
refuse what is not a checkpoint of this stream: they say so, count it, and
the worker starts without it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import orjson
import pytest
from support.cli import riskpipe
from support.events import evidence
from support.nats import trace_to
from support.pipeline import run_worker

from projections import CheckpointRecord
from riskpipe.status import pipeline_status

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer
    from riskpipe.worker import Worker

CHECKPOINT = "risk-0"
KEY = f"$KV.rp-checkpoints.{CHECKPOINT}"


@pytest.fixture
async def store(single_partition_store: EventStore) -> EventStore:
    """One partition: one consumer and one checkpoint record to tamper with."""
    return single_partition_store


async def _entities(store: EventStore, count: int, *, prefix: str = "e") -> None:
    for n in range(count):
        await store.append(evidence(f"{prefix}{n}", tenant="acme", entity=f"{prefix}{n}"))


async def _assessed(store: EventStore) -> list[str]:
    return [
        (rec.event.data or {})["evidence"]["id"]
        async for rec in store.read_all(stream=store.config.stream_for("risk"))
        if rec.event is not None
    ]


async def _forget_consumer(store: EventStore) -> None:
    """Delete the durable consumer: the next worker recreates it from the checkpoint."""
    await store.client.api(f"CONSUMER.DELETE.{store.config.stream_for('evidence')}.{CHECKPOINT}")


async def _stored(store: EventStore) -> dict[str, object]:
    entry = await store.kv(store.config.checkpoint_bucket).get(CHECKPOINT)
    assert entry is not None
    return dict(orjson.loads(entry.value))


def _refused(worker: Worker, reason: str) -> float:
    value = worker.registry.get_sample_value(
        "riskpipe_projection_checkpoints_refused_total", {"projection": "risk", "reason": reason}
    )
    return 0.0 if value is None else value


async def test_a_trace_event_on_the_checkpoint_key_is_refused_by_worker_and_status(
    nats_server: NatsServer, store: EventStore
) -> None:
    """nats-server's trace JSON under the key: the worker starts anyway, status says why."""
    await _entities(store, 2)
    await run_worker(store, nats_server.url)
    await trace_to(nats_server.url, KEY)
    async with asyncio.timeout(10):
        # the bucket keeps one message per key: no count to wait for, only its value
        while "server" not in await _stored(store):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    status = await pipeline_status(store, "risk")
    assert status.checkpoint == 0
    assert status.checkpoint_refused is not None
    assert "malformed" in status.checkpoint_refused
    shown = riskpipe("status", env={"RISKPIPE_NATS_URL": nats_server.url})
    assert shown.returncode == 0, shown.stderr
    assert "checkpoint: 0\n  REFUSED: checkpoint of risk-0 refused (malformed)" in shown.stdout

    await _entities(store, 1, prefix="late")
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 1}
    assert _refused(worker, "malformed") == 1
    assert (await _stored(store))["sequence"] == 3  # replaced by a valid record
    assert (await pipeline_status(store, "risk")).checkpoint_refused is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"sequence": 999999}', "no_generation"),
        (b"not json", "malformed"),
        (b'{"sequence": "3"}', "malformed"),
        (b'{"sequence": -1, "generation": "x"}', "malformed"),
    ],
)
async def test_a_moved_or_malformed_checkpoint_never_makes_a_worker_skip_evidence(
    nats_server: NatsServer, store: EventStore, value: bytes, reason: str
) -> None:
    """Whatever the worker user writes there, a recreated consumer still delivers everything."""
    await _entities(store, 2)
    await run_worker(store, nats_server.url)
    await store.kv(store.config.checkpoint_bucket).put(CHECKPOINT, value)
    await _forget_consumer(store)
    await _entities(store, 2, prefix="late")
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"duplicate_skipped": 2, "assessed": 2}
    assert sorted(await _assessed(store)) == ["e0", "e1", "late0", "late1"]
    assert _refused(worker, reason) == 1


async def test_a_checkpoint_past_the_streams_end_is_refused_even_of_this_generation(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A forged record naming the right generation still cannot point past the last evidence."""
    await _entities(store, 2)
    await run_worker(store, nats_server.url)
    good = CheckpointRecord.model_validate_json(orjson.dumps(await _stored(store)))
    assert good.generation is not None
    forged = CheckpointRecord(sequence=999_999, generation=good.generation)
    await store.kv(store.config.checkpoint_bucket).put(CHECKPOINT, forged.encoded())
    await _forget_consumer(store)
    await _entities(store, 1, prefix="late")
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"duplicate_skipped": 2, "assessed": 1}
    assert _refused(worker, "beyond_stream") == 1
    assert (await _stored(store))["sequence"] == 3
    status = await pipeline_status(store, "risk")
    assert status.checkpoint == 3
    assert status.checkpoint_refused is None


async def test_a_checkpoint_of_a_deleted_and_recreated_stream_is_refused(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The new EVIDENCE stream's sequences start over: the old checkpoint must not skip them.

    The projection was started over (RISK and DLQ deleted too), but its
    checkpoint was left behind.
    """
    await _entities(store, 3)
    await run_worker(store, nats_server.url)
    assert (await _stored(store))["sequence"] == 3
    for stream in (store.config.stream_for("evidence"), store.config.stream_for("risk")):
        await store.client.api(f"STREAM.DELETE.{stream}")
    await store.provision()
    await _entities(store, 5, prefix="new")
    worker = await run_worker(store, nats_server.url)
    # every new evidence was delivered and handled (the stale checkpoint would skip 1..3)
    assert worker.outcomes == {"assessed": 5}
    assert _refused(worker, "other_generation") == 1
    stored = CheckpointRecord.model_validate_json(orjson.dumps(await _stored(store)))
    assert stored.sequence == 5


async def test_a_checkpoint_written_before_generations_is_refused_once_then_rewritten(
    nats_server: NatsServer, store: EventStore
) -> None:
    """An old record (no generation) is not trusted; the worker writes one that names it."""
    await _entities(store, 2)
    await run_worker(store, nats_server.url)
    old = orjson.dumps({"sequence": 2, "written_at": 1.0})
    await store.kv(store.config.checkpoint_bucket).put(CHECKPOINT, old)
    await _forget_consumer(store)
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"duplicate_skipped": 2}
    assert _refused(worker, "no_generation") == 1
    rewritten = CheckpointRecord.model_validate_json(orjson.dumps(await _stored(store)))
    assert rewritten.sequence == 2
    assert rewritten.generation is not None
    again = await run_worker(store, nats_server.url)
    assert _refused(again, "no_generation") == 0
