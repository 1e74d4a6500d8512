"""The producer client: the checks and answers of ``riskpipe publish``, from Python code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.cli import riskpipe

from riskpipe.client import (
    DecodeError,
    NotProvisionedError,
    Observation,
    Outcome,
    Producer,
    Recorded,
    Rejected,
    SyncProducer,
)

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer
    from riskpipe.testing import RiskpipeServer

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def seen(event_id: str, *, entity: str = "e1", **fields: object) -> Observation:
    """An observation with defaults for everything but its id."""
    values: dict[str, object] = {
        "tenant": "acme",
        "entity": entity,
        "pattern": "failed_login_burst",
        "severity": "high",
        "id": event_id,
        "source": "idp",
        "time": T0,
    }
    return Observation(**{**values, **fields})  # type: ignore[arg-type]


async def test_record_stores_once_and_answers_the_sequence(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A first record is stored at a sequence; the same source and id again is that duplicate."""
    async with await Producer.connect(nats_server.url) as producer:
        first = await producer.record(
            "acme",
            "e1",
            "malware_detected",
            "critical",
            id="ev-1",
            source="edr",
            time=T0,
            confidence=0.9,
            attributes={"host": "h1", "count": 3},
            description="EDR alert",
            observed_at=T0 - timedelta(minutes=5),
        )
        again = await producer.record(
            "acme", "e1", "malware_detected", "critical", id="ev-1", source="edr", time=T0
        )
    assert first == Recorded(first.sequence, duplicate=False)
    assert again == Recorded(first.sequence, duplicate=True)
    (recorded,) = [r async for r in store.read("acme", "e1")]
    assert recorded.event.subject == "e1"
    assert recorded.event.data == {
        "pattern": "malware_detected",
        "severity": "critical",
        "confidence": 0.9,
        "attributes": {"host": "h1", "count": 3},
        "description": "EDR alert",
        "observed_at": "2026-03-01T11:55:00Z",
    }


async def test_record_with_impact_or_a_nested_attribute_is_v2(
    store: EventStore, nats_server: NatsServer
) -> None:
    """v2 only when the observation needs it; the worker's upcast makes the rest v2 on read."""
    async with await Producer.connect(nats_server.url) as producer:
        await producer.record(
            "acme", "e1", "malware_detected", "critical", id="v2-impact", source="edr", time=T0,
            impact=0.9,
        )  # fmt: skip
        await producer.record(
            "acme", "e1", "malware_detected", "critical", id="v2-nested", source="edr", time=T0,
            attributes={"host": {"name": "h1", "os": "linux"}, "count": 3},
        )  # fmt: skip
        await producer.record(
            "acme", "e1", "malware_detected", "critical", id="v1", source="edr", time=T0,
            attributes={"host": "h1"},
        )  # fmt: skip
        results = await producer.record_many(
            [seen("bad-impact", impact=1.5), seen("bad-depth", attributes={"a": {"b": {"c": 1}}})]
        )
    stored = {r.event.id: r.event async for r in store.read("acme", "e1")}
    assert {name: event.type[-2:] for name, event in stored.items()} == {
        "v2-impact": "v2", "v2-nested": "v2", "v1": "v1",
    }  # fmt: skip
    assert stored["v2-impact"].data == {
        "pattern": "malware_detected", "severity": "critical", "impact": 0.9,
        "observed_at": "2026-03-01T12:00:00Z",
    }  # fmt: skip
    assert stored["v2-nested"].data is not None
    assert stored["v2-nested"].data["attributes"] == {
        "host": {"name": "h1", "os": "linux"}, "count": 3,
    }  # fmt: skip
    assert [type(r) for r in results] == [Rejected, Rejected]
    assert isinstance(results[0], Rejected)
    assert "data.impact" in results[0].reason
    assert isinstance(results[1], Rejected)
    assert "attributes nest one level at most" in results[1].reason


async def test_an_invalid_observation_raises_what_publish_prints(
    store: EventStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    """The client refuses what ``publish`` refuses, with the same message, and stores nothing."""
    async with await Producer.connect(nats_server.url) as producer:
        with pytest.raises(DecodeError) as refused:
            await producer.record("acme", "e1", "Bad Pattern", "high", id="x", source="s", time=T0)
        naive = datetime(2026, 3, 1, 12, 0)  # noqa: DTZ001 - refused on purpose
        with pytest.raises(DecodeError, match="timezone"):
            await producer.record("acme", "e1", "p", "high", id="y", source="s", time=naive)
    line = seen("x", pattern="Bad Pattern").payload().decode()
    (tmp_path / "bad.jsonl").write_text(line + "\n")
    published = riskpipe("--nats-url", nats_server.url, "publish", str(tmp_path / "bad.jsonl"))
    assert published.returncode == 1
    assert f"line 1: {refused.value}" in published.stderr
    assert await store.count("EVIDENCE", "rp.evidence.>") == 0


async def test_record_many_answers_each_item_in_order(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Valid items are stored and invalid ones rejected in place, duplicates flagged, in order."""
    items = [
        seen("a"),
        seen("b", severity="catastrophic"),
        seen("a"),
        seen("c", entity="e2", confidence=True),
        seen("d", entity="e2"),
        seen("e", confidence=float("nan")),
        seen("f", attributes={"x": float("inf")}),
    ]
    async with await Producer.connect(nats_server.url) as producer:
        results = await producer.record_many(items)
    assert [type(r) for r in results] == [Recorded, Rejected, Recorded, Rejected, Recorded] + [
        Rejected
    ] * 2
    assert isinstance(results[0], Recorded)
    assert results[2] == Recorded(results[0].sequence, duplicate=True)
    assert isinstance(results[1], Rejected)
    assert results[1].error == "SchemaViolationError"
    assert "severity" in results[1].reason
    assert await store.count("EVIDENCE", "rp.evidence.>") == 2


async def test_record_many_puts_envelope_refusals_in_their_places(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Refused before the store (bad id, tenant, naive time) first, together and last: in place."""
    naive = T0.replace(tzinfo=None)
    items = [
        seen("bad id"),
        seen("a"),
        seen("b", tenant="acme.globex"),
        seen("c", time=naive),
        seen("d", severity="catastrophic"),
        seen("e"),
        seen("f", entity="e1.>"),
    ]
    async with await Producer.connect(nats_server.url) as producer:
        results = await producer.record_many(items)
    kinds = [r.error if isinstance(r, Rejected) else "stored" for r in results]
    assert kinds == [
        "SchemaViolationError",
        "stored",
        "SchemaViolationError",
        "SchemaViolationError",
        "SchemaViolationError",
        "stored",
        "SchemaViolationError",
    ]
    assert isinstance(results[2], Rejected)
    assert "tenant" in results[2].reason
    assert isinstance(results[3], Rejected)
    assert "time" in results[3].reason
    assert await store.count("EVIDENCE", "rp.evidence.>") == 2


async def test_record_many_of_more_than_one_chunk(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Thousands of items go out in pipelined chunks, one result each."""
    items = [seen(f"ev-{n}", entity=f"e{n % 50}") for n in range(4500)]
    async with await Producer.connect(nats_server.url) as producer:
        results = await producer.record_many(items)
    assert len(results) == len(items)
    assert all(isinstance(r, Recorded) and not r.duplicate for r in results)
    assert await store.count("EVIDENCE", "rp.evidence.>") == len(items)


async def test_connect_says_when_the_store_is_not_provisioned(nats_server: NatsServer) -> None:
    """Before ``riskpipe init`` the client says so, instead of timing out on its first record."""
    with pytest.raises(NotProvisionedError, match="riskpipe init"):
        await Producer.connect(nats_server.url)


async def test_record_outcome_stores_ground_truth_once(
    store: EventStore, nats_server: NatsServer
) -> None:
    """An outcome is stored once on its entity's subject; a bad one raises as publish says."""
    async with await Producer.connect(nats_server.url) as producer:
        first = await producer.record_outcome(
            "acme", "e1", "fraud_confirmed", positive=True, id="o-1", source="cases", time=T0,
            description="card reported stolen",
        )  # fmt: skip
        again = await producer.record_outcome(
            "acme", "e1", "fraud_confirmed", positive=True, id="o-1", source="cases", time=T0
        )
        with pytest.raises(DecodeError, match=r"data\.outcome"):
            await producer.record_outcome(
                "acme", "e1", "Fraud Confirmed", positive=True, id="o-2", source="cases", time=T0
            )
        mixed = await producer.record_many(
            [
                seen("ev-9"),
                Outcome(
                    tenant="acme", entity="e1", outcome="benign", positive=False, id="o-3",
                    source="cases", time=T0, observed_at=T0 - timedelta(days=1),
                ),
            ]
        )  # fmt: skip
    assert again == Recorded(first.sequence, duplicate=True)
    assert [type(r) for r in mixed] == [Recorded, Recorded]
    outcomes = [r.event async for r in store.read("acme", "e1", category="outcome")]
    assert [(e.id, e.data) for e in outcomes if e is not None] == [
        ("o-1", {"outcome": "fraud_confirmed", "positive": True,
                 "observed_at": "2026-03-01T12:00:00Z", "description": "card reported stolen"}),
        ("o-3", {"outcome": "benign", "positive": False, "observed_at": "2026-02-28T12:00:00Z"}),
    ]  # fmt: skip
    evidence = [r.event async for r in store.read("acme", "e1")]
    assert [e.id for e in evidence if e is not None] == ["ev-9"]


async def test_outcomes_without_their_stream_are_refused_at_once(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A store made before OUTCOMES: outcomes say to run init, at once; evidence is stored.

    Appended regardless, each outcome failed only after the store's retries, 15 s apiece.
    """
    await store.client.api("STREAM.DELETE.OUTCOMES")
    outcome = {
        "tenant": "acme", "entity": "e1", "outcome": "benign", "positive": False,
        "source": "cases", "time": T0,
    }  # fmt: skip
    started = time.monotonic()
    async with await Producer.connect(nats_server.url) as producer:
        mixed = await producer.record_many(
            [seen("ev-1"), Outcome(id="o-1", **outcome), seen("ev-2"), Outcome(id="o-2", **outcome)]
        )
        with pytest.raises(NotProvisionedError, match="run riskpipe init"):
            await producer.record_outcome(
                "acme", "e1", "benign", positive=False, id="o-3", source="cases", time=T0
            )
        await store.provision()  # the stream is made meanwhile: the next outcome is stored
        later = await producer.record_outcome(
            "acme", "e1", "benign", positive=False, id="o-4", source="cases", time=T0
        )
    assert time.monotonic() - started < 10.0
    assert [type(r) for r in mixed] == [Recorded, Rejected, Recorded, Rejected]
    refused = [r for r in mixed if isinstance(r, Rejected)]
    assert all(r.error == "NotProvisionedError" and "OUTCOMES" in r.reason for r in refused)
    assert later == Recorded(1, duplicate=False)


def test_the_sync_producer_from_threads(riskpipe_server: RiskpipeServer) -> None:
    """The blocking client records from several threads at once and closes its own loop thread."""
    url = riskpipe_server.url
    before = threading.active_count()
    with SyncProducer.connect(url) as producer:
        results: list[Recorded] = []

        def work(offset: int) -> None:
            results.extend(
                producer.record(
                    "acme",
                    f"e{n}",
                    "impossible_travel",
                    "medium",
                    id=f"t{offset}-{n}",
                    source="geo",
                    time=T0,
                )
                for n in range(20)
            )

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        many = producer.record_many([seen("fresh")])
        with pytest.raises(DecodeError):
            producer.record("acme", "e1", "p", "none", id="z", source="s", time=T0)
    producer.close()  # a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        producer.record("acme", "e1", "p", "low", id="late", source="s", time=T0)
    assert len({r.sequence for r in results}) == 80
    assert many == [Recorded(many[0].sequence, duplicate=False)]
    assert threading.active_count() == before


def test_the_sync_producer_refuses_a_bad_connection_and_leaves_no_thread(
    nats_server: NatsServer,
) -> None:
    """A failed connect raises the async client's error and stops the thread it started."""
    before = threading.active_count()
    with pytest.raises(NotProvisionedError):
        SyncProducer.connect(nats_server.url)
    assert threading.active_count() == before


DOC = Path(__file__).resolve().parents[2] / "docs" / "producers.md"


def doc_examples() -> tuple[list[str], list[str]]:
    """The Python examples of docs/producers.md: the scripts, and the tests to copy."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [b for b in blocks if "def test_" not in b], [b for b in blocks if "def test_" in b]


@pytest.mark.parametrize("number", range(5))
def test_the_documented_examples_run(riskpipe_server: RiskpipeServer, number: int) -> None:
    """Each example script of docs/producers.md runs as written against a provisioned server."""
    scripts, _ = doc_examples()
    assert len(scripts) == 5
    code = scripts[number].replace("nats://127.0.0.1:4222", riskpipe_server.url)
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()
    if number == 2:  # the third example: many at once
        assert ran.stdout.startswith("1000 stored or duplicate, 0 refused")
    if number == 4:  # the outcome
        assert ran.stdout.startswith("Recorded(sequence=1, duplicate=False)")


def test_the_documented_test_passes_with_the_plugin_alone(pytester: pytest.Pytester) -> None:
    """The example test of docs/producers.md passes in a fresh project: the plugin loads itself."""
    _, tests = doc_examples()
    assert len(tests) == 1
    pytester.makepyfile(test_example=tests[0])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_score_fails_the_test_when_the_worker_cannot_run(pytester: pytest.Pytester) -> None:
    """A worker that cannot run fails the calling test with its output, instead of hanging."""
    pytester.makepyfile(
        test_broken="""
def test_it(riskpipe_server):
    riskpipe_server.server.kill()
    riskpipe_server.score()
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*riskpipe worker exited 1*"])


def test_the_ingest_bench_measures_the_client_beside_the_store() -> None:
    """``bench ingest --via client`` reports the client's rate, CPU per event and store ratio."""
    ran = riskpipe(
        "bench", "ingest", "--via", "client", "--events", "300", "--entities", "5",
        "--runs", "1", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    figures = json.loads(ran.stdout)
    assert figures["client_per_s"] > 0
    assert figures["client_cpu_us"] > 0
    assert figures["client_ratio"] == pytest.approx(
        figures["client_per_s"] / figures["store_per_s"], rel=0.01
    )
    assert figures["client_target"] == 0.9


def test_the_ingest_bench_measures_http_beside_the_store() -> None:
    """``bench ingest --via http`` posts batches of 500 and reports the rate and request times."""
    ran = riskpipe(
        "bench", "ingest", "--via", "http", "--events", "1200", "--entities", "5",
        "--runs", "1", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    figures = json.loads(ran.stdout)
    assert figures["http_per_s"] > 0
    assert figures["http_cpu_us"] > 0
    assert figures["http_batch"] == 500
    assert figures["http_requests"] == 3  # 500, 500 and 200 events, in the one counted run
    assert 0 < figures["http_p50_ms"] <= figures["http_p99_ms"]
    assert figures["http_ratio"] == pytest.approx(
        figures["http_per_s"] / figures["store_per_s"], rel=0.01
    )
