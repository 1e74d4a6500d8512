"""A worker whose consumer was changed by someone else refuses to run, at start or while running."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker, wait_for_messages

from eventstore import partition_of
from eventstore.errors import ConsumerDriftError
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


def _consumer(store: EventStore) -> str:
    """The consumer of the partition the tests' entity is in."""
    first = evidence("a1")
    return f"risk-{partition_of(first.tenant, first.subject, store.config.partitions)}"


async def _hijack(store: EventStore, **changes: Any) -> None:
    """Update the worker's consumer the way a producer could: the create API, named in the body."""
    name = _consumer(store)
    info = await store.client.api(f"CONSUMER.INFO.EVIDENCE.{name}")
    config = {**info["config"], **changes, "name": name}
    del config["durable_name"]  # the bare create API takes the name from the body alone
    reply = await store.client.nc.request(
        "$JS.API.CONSUMER.CREATE.EVIDENCE",
        orjson.dumps({"stream_name": "EVIDENCE", "config": config}),
        timeout=2,
    )
    assert b'"error"' not in reply.data, reply.data


async def _worker_running(
    store: EventStore, url: str, *, check_seconds: float
) -> tuple[Worker, asyncio.Task[None]]:
    """A worker running in the background once it has assessed one evidence event."""
    await store.append(evidence("a1"))
    settings = Settings(nats_url=url, fetch_timeout=0.2, consumer_check_seconds=check_seconds)
    worker = Worker(store, settings, CollectorRegistry())
    running = asyncio.create_task(worker.run(asyncio.Event(), http=False))
    await wait_for_messages(store, "RISK", 1, timeout=30)
    return worker, running


@pytest.mark.parametrize(
    "changes",
    [{"headers_only": True}, {"filter_subject": "rp.evidence.nobody.>"}],
    ids=["headers-only", "filter"],
)
async def test_a_changed_consumer_stops_the_worker_at_start(
    nats_server: NatsServer, store: EventStore, changes: dict[str, Any]
) -> None:
    """A worker finding its consumer changed exits 1 with one line saying what changed."""
    await store.append(evidence("a1"))
    await run_worker(store, nats_server.url)
    await _hijack(store, **changes)
    await store.append(evidence("a2", minute=1))
    result = riskpipe(
        "worker", "--until-idle", "--no-http", env={"RISKPIPE_NATS_URL": nats_server.url}
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    error = orjson.loads(line)["error"]
    assert f"consumer {_consumer(store)} on EVIDENCE was changed by someone else" in error
    assert next(iter(changes)) in error
    with pytest.raises(ConsumerDriftError):
        await run_worker(store, nats_server.url)


async def test_a_consumer_changed_under_a_running_worker_stops_it(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Changed while the worker runs: it turns unready, stops, and says why."""
    worker, running = await _worker_running(store, nats_server.url, check_seconds=0.2)
    await _hijack(store, filter_subject="rp.evidence.nobody.>")
    with pytest.raises(ConsumerDriftError, match="filter_subject"):
        async with asyncio.timeout(30):
            await running
    ready, why = worker.readiness()
    assert not ready
    assert "changed by someone else" in why


async def test_status_says_the_consumer_was_changed_and_exits_3(
    nats_server: NatsServer, store: EventStore
) -> None:
    """`status` names what changed and exits 3, instead of a healthy-looking pending=0."""
    await store.append(evidence("a1"))
    await run_worker(store, nats_server.url)
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("status", env=env).returncode == 0
    await _hijack(store, filter_subject="rp.evidence.nobody.>")
    await store.append(evidence("a2", minute=1))
    shown = riskpipe("status", env=env)
    assert shown.returncode == 3, shown.stdout + shown.stderr
    assert (
        f"CHANGED BY SOMEONE ELSE: {_consumer(store)}.filter_subject is 'rp.evidence.nobody.>'"
        in shown.stdout
    )
    as_json = riskpipe("status", "--json", env=env)
    assert as_json.returncode == 3
    name = _consumer(store)
    assert orjson.loads(as_json.stdout)["consumer_changed"] == {
        f"{name}.filter_subject": [
            "rp.evidence.nobody.>",
            store.config.partition_filter(int(name.removeprefix("risk-"))),
        ]
    }


async def test_deliveries_without_their_payload_are_never_dead_lettered(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Headers-only deliveries stop the worker before the next check; nothing is lost."""
    _, running = await _worker_running(store, nats_server.url, check_seconds=3600)
    await _hijack(store, headers_only=True)
    await store.append(evidence("a2", minute=1))
    with pytest.raises(ConsumerDriftError, match="headers_only"):
        async with asyncio.timeout(30):
            await running
    assert await store.count("DLQ", "rp.dlq.>") == 0, "no dead letter of nothing"
    await store.client.api(f"CONSUMER.DELETE.EVIDENCE.{_consumer(store)}")
    await run_worker(store, nats_server.url)
    assert await store.count("RISK", "rp.risk.>") == 2, "a2 is assessed once the consumer is whole"


async def test_init_says_the_consumer_was_changed_and_exits_1(
    nats_server: NatsServer, store: EventStore
) -> None:
    """`init` reports a changed consumer and fails, instead of success over it."""
    await store.append(evidence("a1"))
    await run_worker(store, nats_server.url)
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", env=env).returncode == 0
    await _hijack(store, headers_only=True)
    result = riskpipe("init", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "found    EVIDENCE" in result.stdout
    name = _consumer(store)
    assert f"consumer {name} on EVIDENCE was changed by someone else: headers_only" in (
        result.stderr
    )
    assert f"Error: consumer {name} was changed by someone else" in result.stderr
