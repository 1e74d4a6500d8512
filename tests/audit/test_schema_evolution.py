"""A log mixing evidence v1 and v2: assessed by a real worker, verified byte for byte by replay.

v1 evidence is read as v2 (no impact) everywhere the analyzer reads
evidence; the stored bytes are never rewritten, and assessments recorded
before v2 existed (analyzer 1.1.0) still verify.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
from prometheus_client import CollectorRegistry
from support.cli import riskpipe
from support.events import evidence, evidence_line
from support.pipeline import run_worker

from analyzers import ANALYZER_VERSION, AnalyzerConfig
from projections.audit import explain, export_rows, replay
from projections.risk import RiskAssessedData
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from eventstore import CloudEvent, EventStore
    from riskpipe.server import NatsServer

V1, V2 = "riskpipe.evidence.recorded.v1", "riskpipe.evidence.recorded.v2"


def _mixed(start: int, count: int) -> list[CloudEvent]:
    """Evidence for two entities, alternating v1 and v2 (with impacts and nested attributes)."""
    events = []
    for i in range(start, start + count):
        if i % 2:
            events.append(
                evidence(
                    f"m{i}", entity=f"e{i % 2}", minute=i, version=2, impact=(i % 5) / 4,
                    attributes={"geo": {"country": "NL", "asn": i}, "port": 22},
                )
            )  # fmt: skip
        else:
            events.append(evidence(f"m{i}", entity=f"e{i % 2}", minute=i, severity="low"))
    return events


async def _append(store: EventStore, events: list[CloudEvent]) -> None:
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _run_worker_as(version: str, store: EventStore, url: str) -> None:
    """Run a worker until idle that scores as analyzer ``version`` did (its default config)."""
    worker = Worker(store, Settings(nats_url=url, fetch_timeout=0.2), CollectorRegistry())
    worker.projection.config = AnalyzerConfig().for_version(version)
    async with asyncio.timeout(60):
        await worker.run(asyncio.Event(), until_idle=True, http=False)


async def _assessments(store: EventStore) -> list[tuple[bytes, RiskAssessedData]]:
    """Every stored assessment: its bytes, and its data."""
    found = []
    async for rec in store.read_all(stream="RISK"):
        assert rec.event is not None
        data = store.schemas.typed_data(rec.event)
        assert isinstance(data, RiskAssessedData)
        found.append((rec.payload, data))
    return found


async def test_a_v1_log_from_before_v2_and_mixed_evidence_after_all_verify(
    nats_server: NatsServer, store: EventStore
) -> None:
    """1.1.0's assessments of v1 evidence, then this version's of v1 and v2: all re-derived.

    The earlier assessments' bytes are untouched, v2 evidence with an impact
    names ``impact_amplification``, and a strict replay still tells the
    versions apart.
    """
    await _append(store, [evidence(f"old{i}", entity=f"e{i % 2}", minute=i) for i in range(6)])
    await _run_worker_as("1.1.0", store, nats_server.url)
    before = [payload for payload, _ in await _assessments(store)]
    assert len(before) == 6
    await _append(store, _mixed(10, 10))
    await run_worker(store, nats_server.url)
    after = await _assessments(store)
    assert [payload for payload, _ in after[:6]] == before
    versions = [data.assessment.analyzer_version for _, data in after]
    assert versions == ["1.1.0"] * 6 + [ANALYZER_VERSION] * 10
    impacts = {
        data.evidence.id: data.assessment.contributions.get("impact_amplification")
        for _, data in after[6:]
    }
    # e1's evidence is v2 with an impact (m11 has 1/4); e0's is all v1: no such feature
    assert {key: share is not None for key, share in impacts.items()} == {
        f"m{i}": bool(i % 2) for i in range(10, 20)
    }
    assert impacts["m11"] is not None
    assert impacts["m11"] > 0

    report = await replay(store)
    assert report.ok, report.findings
    assert (report.totals.identical, report.totals.checked) == (16, 16)
    parallel = await replay(store, jobs=2)
    assert parallel.ok, parallel.findings
    assert parallel.totals.identical == 16
    strict = await replay(store, strict=True)
    assert (strict.ok, strict.totals.version_mismatch, strict.totals.identical) == (False, 6, 10)


async def test_what_if_impact_were_ignored_lowers_only_the_entity_with_impacts(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Impact counts: re-scored without it, the entity whose evidence had one falls a level."""
    await _append(store, [evidence(f"p{i}", entity="plain", minute=i) for i in range(3)])
    await _append(
        store,
        [evidence(f"i{i}", entity="hit", minute=i, version=2, impact=1.0) for i in range(3)],
    )
    await run_worker(store, nats_server.url)
    verified = await replay(store)
    assert (verified.ok, verified.totals.identical) == (True, 6)
    ignored = AnalyzerConfig(impact_amplification=0.0)
    report = await replay(store, config=ignored, what_if=True)
    changes = report.level_changes
    assert changes is not None
    assert changes.downgrades > 0
    assert changes.upgrades == 0
    assert {entity for _, entity in changes.affected()} == {"hit"}


async def test_explain_and_export_read_v1_as_v2_and_say_what_was_stored(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Explain and export show the evidence as the analyzer read it, and export its stored type."""
    await _append(store, _mixed(0, 4))
    await run_worker(store, nats_server.url)
    explanation = await explain(store, "t1", "e1")
    (first, second) = [entry.as_dict()["evidence"] for entry in explanation.timeline]
    assert first["impact"] == 0.25
    assert first["attributes"] == {"geo": {"country": "NL", "asn": 1}, "port": 22}
    rows = [row async for row in export_rows(store, "t1")]
    assert [(row.evidence_id, row.evidence_type, row.impact) for row in rows] == [
        ("m0", V1, None), ("m1", V2, 0.25), ("m2", V1, None), ("m3", V2, 0.75),
    ]  # fmt: skip
    assert second["impact"] == 0.75


def test_publish_worker_and_replay_from_the_command_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A JSONL file mixing v1 and v2, published, assessed by `riskpipe worker`, then replayed."""
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", env=env).returncode == 0
    lines = [
        evidence_line("c1"),
        evidence_line("c2", version=2, minute=1, impact=0.5, attributes={"a": {"b": 1}}),
        evidence_line("c3", version=2, minute=2),
        evidence_line("c4", minute=3, entity="e2"),
        evidence_line("c5", version=2, minute=4, entity="e2", impact=1),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    published = riskpipe("publish", str(path), env=env)
    assert published.returncode == 0, published.stderr
    assert "stored=5 duplicates=0 rejected=0" in published.stdout
    assert riskpipe("worker", "--until-idle", "--no-http", env=env).returncode == 0
    replayed = riskpipe("replay", "--json", env=env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    summary: dict[str, Any] = json.loads(replayed.stdout)["summary"]
    assert (summary["identical"], summary["failures"], summary["evidence"]) == (5, 0, 5)


RECORDED = Path(__file__).parent / "data" / "log_analyzer_1_1_0.jsonl"
"""EVIDENCE and RISK as the build before evidence v2 (analyzer 1.1.0) stored them.

Made with that build's own commands on a fresh server: ``riskpipe init``,
``riskpipe publish`` of nine v1 events (two tenants, four entities;
reported and default confidences, attributes of every scalar kind, an
``observed_at`` with microseconds, a time with an offset, a correlation id,
an extension attribute) and ``riskpipe worker --until-idle``; then every
message of both streams read back with its subject, headers and payload.
"""


async def _restore(url: str) -> list[dict[str, Any]]:
    """Append the recorded messages to a fresh store, byte for byte, at their sequences."""
    rows = [json.loads(line) for line in RECORDED.read_text().splitlines()]
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for row in rows:
            subject = row["subject"]
            if row["stream"] == "EVIDENCE":  # published without the partition the server adds
                prefix, category, _, tenant, entity = subject.split(".")
                subject = f"{prefix}.{category}.{tenant}.{entity}"
            headers = {"Nats-Msg-Id": row["headers"]["Nats-Msg-Id"]}
            ack = await js.publish(subject, row["payload"].encode(), headers=headers)
            assert (ack.stream, ack.seq) == (row["stream"], row["sequence"])
    finally:
        await nc.close()
    return rows


async def test_a_log_recorded_before_v2_verifies_and_goes_on_with_v2(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The pre-v2 build's own log verifies as it is, and after this build adds mixed evidence.

    Its v1 evidence is upcast on read; its assessments (analyzer 1.1.0) are
    re-derived from that byte for byte; nothing of it is rewritten.
    """
    rows = await _restore(nats_server.url)
    stored = {(r["stream"], r["sequence"]): r for r in rows}
    evidence_count = sum(1 for r in rows if r["stream"] == "EVIDENCE")
    report = await replay(store)
    assert report.ok, report.findings
    assert (report.totals.identical, report.totals.evidence) == (evidence_count, evidence_count)
    assert {d.assessment.analyzer_version for _, d in await _assessments(store)} == {"1.1.0"}

    more = [
        evidence("n1", tenant="acme", entity="user-1", minute=60 * 24 * 8, version=2,
                 impact=0.6, attributes={"geo": {"country": "PE"}}),
        evidence("n2", tenant="acme", entity="user-1", minute=60 * 24 * 8 + 1, severity="low"),
        evidence("n3", tenant="acme", entity="host-9", minute=60 * 24 * 2, version=2),
    ]  # fmt: skip
    await _append(store, more)
    await run_worker(store, nats_server.url)
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.identical == evidence_count + len(more)
    after = await _assessments(store)
    kept = [payload.decode() for payload, _ in after[:evidence_count]]
    assert kept == [stored["RISK", seq]["payload"] for seq in range(1, evidence_count + 1)]
    evidence_now = [rec.payload.decode() async for rec in store.read_all()]
    assert evidence_now[:evidence_count] == [
        stored["EVIDENCE", seq]["payload"] for seq in range(1, evidence_count + 1)
    ]
    versions = [d.assessment.analyzer_version for _, d in after]
    assert versions == ["1.1.0"] * evidence_count + [ANALYZER_VERSION] * len(more)
