"""Tampering shows up: forged assessments, states, versions and enrichment answers.

Also a config changed without a version bump, and an earlier version's log that verifies.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker
from support.reputation_server import Reply

from analyzers import (
    ANALYZER_VERSION,
    REDERIVABLE_VERSIONS,
    AnalyzerConfig,
    EnrichmentSignal,
    Evidence,
    EvidenceData,
    ReviewSignal,
    RiskLevel,
    assess,
)
from eventstore import ANY, CloudEvent
from projections.audit import export_rows, replay
from projections.risk import ASSESSED, RiskAssessedData
from riskpipe.logs import configure_logging
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from support.reputation_server import ReputationServer

    from eventstore import EventStore
    from projections.audit import ExportRow
    from riskpipe.server import NatsServer


async def _publish(store: EventStore, count: int, *, start: int = 0, entities: int = 4) -> None:
    events = [
        evidence(f"x{i}", entity=f"e{i % entities}", minute=i, severity=("low", "high")[i % 2])
        for i in range(start, start + count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _append_forged(
    store: EventStore, data: dict[str, Any], entity: str, name: str, *, expected: int | None = None
) -> None:
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
        ),
        expected_version=ANY if expected is None else expected,
    )


async def _forge_next(  # noqa: PLR0913 - the entity, the forgery, and its signals
    store: EventStore,
    entity: str,
    *,
    assessment: dict[str, Any],
    state: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]],
    enrichment: EnrichmentSignal | None = None,
    review: ReviewSignal | None = None,
) -> int:
    """Store new evidence for ``entity`` and, before any worker sees it, a forged assessment.

    The forgery is the true assessment (with ``enrichment``, if any) with
    ``assessment`` and ``state`` changes applied (``state`` may be a function of
    the true state), published with the entity's last assessment as the expected
    version, as the projection publishes: it takes it as its own and skips the evidence.
    """
    stored = await store.append(evidence("victim", entity=entity, minute=500, severity="low"))
    last = await store.last(store.config.subject("risk", "t1", entity))
    assert last is not None
    assert last.event is not None
    recorded = store.schemas.typed_data(last.event)
    assert isinstance(recorded, RiskAssessedData)
    rec = await store.get(store.config.stream_for("evidence"), stored.sequence)
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
        config=AnalyzerConfig(), enrichment=enrichment, review=review,
    )  # fmt: skip
    data = recorded.model_dump(mode="json")
    data["evidence"] = {**data["evidence"], "id": "victim", "sequence": stored.sequence}
    data["assessment"] = {**true.model_dump(mode="json"), **assessment}
    true_data = true_state.model_dump(mode="json")
    data["state"] = state(true_data) if callable(state) else {**true_data, **state}
    if "cursor" in data:
        data["cursor"] = stored.sequence
    await _append_forged(store, data, entity, "forged-next", expected=last.sequence)
    return stored.sequence


def _fifty_fold(state: dict[str, Any]) -> dict[str, Any]:
    """The state with 50 times the evidence mass of every pattern."""
    return {**state, "pattern_mass": {k: 50 * v for k, v in state["pattern_mass"].items()}}


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


async def test_an_unknown_version_with_a_forged_state_fails_and_taints_what_follows(
    store: EventStore, forged_version: int
) -> None:
    """A forgery signed "0.9.0" with a 50x state fails; the 3 honest ones built on it differ."""
    seq = forged_version
    report = await replay(store)
    assert not report.ok
    totals = report.totals
    assert (totals.version_mismatch, totals.differing, totals.identical) == (1, 3, 8)
    first, *built_on_it = report.findings
    assert (first.kind, first.entity, first.evidence_sequence) == ("version_mismatch", "e3", seq)
    assert "scored by analyzer 0.9.0, which this build" in first.detail
    assert first.difference is not None
    assert first.difference.path.startswith("state.")
    assert first.difference.recorded == 50 * first.difference.rederived
    assert [f.kind for f in built_on_it] == ["differs"] * 3
    strict = await replay(store, strict=True)
    assert (strict.ok, strict.totals.version_mismatch) == (False, 1)


def test_the_command_fails_on_an_unknown_version_by_default(
    nats_server: NatsServer, forged_version: int
) -> None:
    """``riskpipe replay`` exits 1 and names the entity, the sequence and the two values."""
    done = riskpipe("replay", env={"RISKPIPE_NATS_URL": nats_server.url})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "version_mismatch=1" in done.stdout
    assert "differing=3" in done.stdout
    assert "FAILED (4 finding(s))" in done.stdout
    found = json.loads(
        riskpipe("replay", "--json", env={"RISKPIPE_NATS_URL": nats_server.url}).stdout
    )
    first = found["findings"][0]
    assert (first["kind"], first["entity"], first["evidence_sequence"]) == (
        "version_mismatch",
        "e3",
        forged_version,
    )
    assert first["difference"]["recorded"] == 50 * first["difference"]["rederived"]


@pytest.fixture
async def forged_version(nats_server: NatsServer, store: EventStore) -> int:
    """The log of the test above: a "0.9.0" forgery with a 50x state and 3 honest followers."""
    return await _forged_chain(store, nats_server.url, {"analyzer_version": "0.9.0"})


async def test_a_forged_state_stamped_with_a_known_earlier_version_differs(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Stamped 1.0.0 with 1.0.0's fingerprint, the forgery is re-derived as 1.0.0, and differs."""
    stamp = AnalyzerConfig().for_version("1.0.0")
    seq = await _forged_chain(
        store,
        nats_server.url,
        {"analyzer_version": "1.0.0", "config_fingerprint": stamp.fingerprint()},
    )
    report = await replay(store)
    totals = report.totals
    assert (totals.version_mismatch, totals.differing, totals.identical) == (0, 4, 8)
    first = report.findings[0]
    assert (first.kind, first.evidence_sequence) == ("differs", seq)
    assert first.difference is not None
    assert first.difference.path.startswith("state.pattern_mass.")


async def _forged_chain(store: EventStore, url: str, stamp: dict[str, Any]) -> int:
    """8 honest assessments, a forgery for e3 with ``stamp`` and a 50x state, 3 honest after it."""
    await _publish(store, 8)
    await run_worker(store, url)
    seq = await _forge_next(store, "e3", assessment=stamp, state=_fifty_fold)
    for i in range(3):
        await store.append(evidence(f"after{i}", entity="e3", minute=501 + i, severity="low"))
    await run_worker(store, url)
    return seq


async def test_a_log_of_an_earlier_known_version_verifies(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Assessments analyzer 1.0.0 wrote, then this version's, all re-derive identically."""
    assert "1.0.0" in REDERIVABLE_VERSIONS
    await _publish(store, 8)
    await _run_worker_as("1.0.0", store, nats_server.url)
    await _publish(store, 8, start=8)
    await run_worker(store, nats_server.url)
    versions = [row.analyzer_version for row in await _rows(store)]
    assert versions == ["1.0.0"] * 8 + [ANALYZER_VERSION] * 8
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.identical == 16
    strict = await replay(store, strict=True)
    assert (strict.ok, strict.totals.version_mismatch, strict.totals.identical) == (False, 8, 8)


@pytest.mark.usefixtures("logging_restored")
async def test_a_clearing_enrichment_answer_is_bounded_and_verified(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """A service answering -1.0 no longer clears three critical malware events; replay agrees."""
    reputation.script(CLEAR)
    await _malware(store, "e1")
    configure_logging("warning")  # whatever level an earlier test left
    with capture_logs() as logs:
        await run_worker(
            store, nats_server.url, enrichment_url=reputation.url, enrichment_attempts=1
        )
    bounded = [log for log in logs if log["event"] == "risk.enrichment_bounded"]
    assert [(log["modifier"], log["applied"]) for log in bounded] == [(-1.0, -0.5)] * 3
    last = (await _rows(store))[-1]
    assert last.enrichment == {"provider": "reputation", "modifier": -1.0}
    assert last.score is not None
    assert last.score > 0.45
    assert last.level != "low"
    report = await replay(store, strict=True)
    assert report.ok, report.findings
    assert report.totals.identical == 3


async def test_a_clearing_enrichment_recorded_by_an_earlier_version_is_impossible(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """1.0.0 let -1.0 clear the entity (low 0.0); replay flags the modifier outside the bounds."""
    reputation.script(CLEAR)
    await _malware(store, "e1")
    await _run_worker_as(
        "1.0.0", store, nats_server.url, enrichment_url=reputation.url, enrichment_attempts=1
    )
    rows = await _rows(store)
    assert [(r.level, r.score) for r in rows] == [("low", 0.0)] * 3
    report = await replay(store)
    assert not report.ok
    assert (report.totals.differing, report.totals.identical) == (3, 0)
    finding = report.findings[0]
    assert (finding.kind, finding.entity, finding.evidence_sequence) == ("differs", "e1", 1)
    assert "impossible enrichment: reputation answered -1.0, applied as -1.0" in finding.detail
    assert "outside the bounds [-0.5, 1.0]" in finding.detail


async def test_a_score_the_recorded_modifier_does_not_produce_differs(
    nats_server: NatsServer, store: EventStore, reputation: ReputationServer
) -> None:
    """A forgery that records -1.0 and the cleared score it would once have given is found."""
    reputation.script(CLEAR)
    await _malware(store, "e1")
    await run_worker(store, nats_server.url, enrichment_url=reputation.url, enrichment_attempts=1)
    seq = await _forge_next(
        store,
        "e1",
        assessment={"score": 0.0, "level": "low"},
        state={"level": "low"},
        enrichment=EnrichmentSignal(provider="reputation", modifier=-1.0),
    )
    report = await replay(store, strict=True)
    assert not report.ok
    [finding] = report.findings
    assert (finding.kind, finding.evidence_sequence) == ("differs", seq)
    assert finding.difference is not None
    assert (finding.difference.path, finding.difference.recorded) == ("assessment.score", 0.0)
    assert finding.difference.rederived > 0.0


CLEAR = Reply(status=200, body=b'{"modifier": -1.0}')
"""A reputation service that would clear any entity."""


async def _malware(store: EventStore, entity: str) -> None:
    for i in range(3):
        await store.append(
            evidence(
                f"m{i}", entity=entity, minute=i, pattern="malware_detected", severity="critical"
            )
        )


async def _rows(store: EventStore) -> list[ExportRow]:
    return [row async for row in export_rows(store, "t1")]


async def _run_worker_as(version: str, store: EventStore, url: str, **overrides: Any) -> None:
    """Run a worker until idle that scores as analyzer ``version`` did, with its default config."""
    worker = Worker(
        store, Settings(nats_url=url, fetch_timeout=0.2, **overrides), CollectorRegistry()
    )
    worker.projection.config = AnalyzerConfig().for_version(version)
    async with asyncio.timeout(60):
        await worker.run(asyncio.Event(), until_idle=True, http=False)


async def test_a_review_signal_no_decision_accounts_for_is_flagged(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A forged floor naming a decision the review stream lacks: self-consistent, still caught."""
    await _publish(store, 8)
    await run_worker(store, nats_server.url)
    forged = ReviewSignal(floor=RiskLevel.CRITICAL, decisions=(999,))
    seq = await _forge_next(store, "e2", assessment={}, state={}, review=forged)
    report = await replay(store)
    assert not report.ok
    finding = report.findings[0]
    assert (finding.kind, finding.entity, finding.evidence_sequence) == ("differs", "e2", seq)
    assert "impossible review: decision 999 is not in the review stream" in finding.detail
