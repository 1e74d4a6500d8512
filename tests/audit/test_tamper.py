"""Tampering shows up: forged assessments, a config changed without a version bump, old versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from support.events import evidence
from support.pipeline import run_worker

from analyzers import AnalyzerConfig, Evidence, EvidenceData, assess
from eventstore import CloudEvent
from projections.audit import export_rows, replay
from projections.risk import ASSESSED, RiskAssessedData

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _publish(store: EventStore, count: int, *, start: int = 0, entities: int = 4) -> None:
    events = [
        evidence(f"x{i}", entity=f"e{i % entities}", minute=i, severity=("low", "high")[i % 2])
        for i in range(start, start + count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _append_forged(store: EventStore, data: dict[str, Any], entity: str, name: str) -> None:
    forged = RiskAssessedData.model_validate(data)
    await store.append(
        CloudEvent(
            id=name,
            source="riskpipe/projection/risk",
            type=ASSESSED,
            subject=entity,
            tenant="t1",
            time=forged.assessment.as_of,
            data=forged.model_dump(mode="json"),
        )
    )


async def _forge_next(
    store: EventStore, entity: str, *, assessment: dict[str, Any], state: dict[str, Any]
) -> int:
    """Store new evidence for ``entity`` and, before any worker sees it, a forged assessment.

    The forgery is the true assessment with ``assessment`` and ``state`` changes
    applied, so the projection takes it as its own and skips the evidence.
    """
    stored = await store.append(evidence("victim", entity=entity, minute=500, severity="low"))
    last = await store.last(store.config.subject("risk", "t1", entity))
    assert last is not None
    assert last.event is not None
    recorded = store.schemas.typed_data(last.event)
    assert isinstance(recorded, RiskAssessedData)
    rec = await store.get(store.config.evidence_stream, stored.sequence)
    assert rec is not None
    assert rec.event is not None
    typed = store.schemas.typed_data(rec.event)
    assert isinstance(typed, EvidenceData)
    true, true_state = assess(
        recorded.state,
        Evidence.from_data(
            typed, event_id="victim", source="test-src", sequence=stored.sequence,
            event_time=rec.event.time,
        ),
        config=AnalyzerConfig(),
    )  # fmt: skip
    data = recorded.model_dump(mode="json")
    data["evidence"] = {**data["evidence"], "id": "victim", "sequence": stored.sequence}
    data["assessment"] = {**true.model_dump(mode="json"), **assessment}
    data["state"] = {**true_state.model_dump(mode="json"), **state}
    if "cursor" in data:
        data["cursor"] = stored.sequence
    await _append_forged(store, data, entity, "forged-next")
    return stored.sequence


async def test_a_forged_second_assessment_fails_the_replay(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A forged assessment appended for evidence already assessed is reported; exit non-zero."""
    await _publish(store, 24)
    await run_worker(store, nats_server.url)
    last = await store.last(store.config.subject("risk", "t1", "e2"))
    assert last is not None
    assert last.event is not None
    data = dict(last.event.data or {})
    data["assessment"] = {**data["assessment"], "level": "critical", "score": 0.99}  # type: ignore[dict-item]
    await _append_forged(store, data, "e2", "forged-1")
    report = await replay(store)
    assert not report.ok
    assert report.totals.identical == 24
    [finding] = report.findings
    assert finding.kind == "extra"
    assert (finding.tenant, finding.entity) == ("t1", "e2")
    assert f"a second assessment of evidence {finding.evidence_sequence}" in finding.detail


async def test_an_assessment_forged_on_another_subject_hides_nothing(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A forgery for e2's evidence, stored first on e1's subject, is extra; e2's own one counts."""
    await _publish(store, 8)
    await run_worker(store, nats_server.url)
    stored = await store.append(evidence("next", entity="e2", minute=100, severity="low"))
    last = await store.last(store.config.subject("risk", "t1", "e1"))
    assert last is not None
    assert last.event is not None
    data = dict(last.event.data or {})
    data["evidence"] = {**data["evidence"], "id": "next", "sequence": stored.sequence}  # type: ignore[dict-item]
    await _append_forged(store, data, "e1", "forged-elsewhere")
    await run_worker(store, nats_server.url)
    report = await replay(store)
    assert (report.totals.identical, report.totals.missing, report.totals.extra) == (9, 0, 1)
    [finding] = report.findings
    assert (finding.kind, finding.entity, finding.evidence_sequence) == ("extra", "e1", 9)
    assert "stored on another entity's subject than evidence 9" in finding.detail
    rows = [row async for row in export_rows(store, "t1", entity="e2")]
    assert (rows[-1].evidence_sequence, rows[-1].outcome) == (9, "assessed")


async def test_a_forged_assessment_the_projection_accepted_differs(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A forgery taken for the entity's state is found at its first differing field and values."""
    await _publish(store, 12)
    await run_worker(store, nats_server.url)
    seq = await _forge_next(
        store, "e1", assessment={"score": 0.97, "level": "critical"}, state={"level": "critical"}
    )
    await store.append(evidence("after", entity="e1", minute=501, severity="low"))
    await run_worker(store, nats_server.url)
    report = await replay(store)
    assert not report.ok
    assert report.totals.differing == 2, "the forgery and the assessment built on it"
    first = report.entities["t1", "e1"].first_finding
    assert first is not None
    assert (first.kind, first.evidence_sequence) == ("differs", seq)
    assert first.difference is not None
    assert first.difference.path == "assessment.score"
    assert first.difference.recorded == 0.97
    assert first.difference.rederived < 0.97
    assert "assessment.score: recorded 0.97, re-derived" in first.detail


async def test_config_changed_without_a_version_bump_is_flagged(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    """Assessments scored with another config by the same analyzer version fail the replay."""
    changed = tmp_path / "changed.toml"
    changed.write_text("[thresholds]\nmedium = 0.2\nhigh = 0.45\ncritical = 0.7\n")
    await _publish(store, 20)
    await run_worker(store, nats_server.url)
    await _publish(store, 20, start=20)
    await run_worker(store, nats_server.url, analyzer_config=changed)
    report = await replay(store)
    assert not report.ok
    assert (report.totals.identical, report.totals.config_mismatch) == (20, 20)
    finding = report.findings[0]
    assert finding.kind == "config_mismatch"
    assert finding.evidence_sequence == 21
    assert "without a version bump" in finding.detail


async def test_another_analyzer_version_is_a_mismatch_not_a_difference(
    nats_server: NatsServer, store: EventStore
) -> None:
    """An assessment from an older analyzer is reported as such; it fails only a strict replay."""
    await _publish(store, 8)
    await run_worker(store, nats_server.url)
    seq = await _forge_next(store, "e3", assessment={"analyzer_version": "0.9.0"}, state={})
    await store.append(evidence("after", entity="e3", minute=501))
    await run_worker(store, nats_server.url)
    report = await replay(store)
    assert report.ok, report.findings
    assert (report.totals.version_mismatch, report.totals.differing) == (1, 0)
    assert report.totals.identical == 9
    [finding] = report.findings
    assert (finding.kind, finding.evidence_sequence) == ("version_mismatch", seq)
    assert "0.9.0" in finding.detail
    strict = await replay(store, strict=True)
    assert not strict.ok
