"""Promotions with running workers: the switch at the recorded position, restarts, replay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from support.events import evidence
from support.pipeline import WorkerProcess, check_invariants, read_streams, wait_for_messages

from analyzers import AnalyzerConfig, SeverityWeights
from eventstore import NO_STREAM, CloudEvent
from projections.audit import replay
from projections.errors import ConfigUnavailableError
from projections.learning import (
    CONFIG_PROMOTED,
    CONFIG_PROPOSED,
    ConfigBook,
    ConfigPromotedData,
    ConfigProposedData,
    LiveConfigs,
    promote,
    propose,
    read_config_book,
)
from projections.review import Actor

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OPS = Actor(name="olga", role="operator")
TUNED = AnalyzerConfig(severity_weights=SeverityWeights(low=0.05, medium=0.2, high=0.7, critical=1))
DEFAULT = AnalyzerConfig()
SEVERITIES = ("low", "medium", "high", "critical")


def _clock() -> datetime:
    return NOW


async def _evidence(store: EventStore, first: int, count: int, entities: int = 6) -> None:
    events = [
        evidence(
            f"ev{n}",
            entity=f"u{n % entities}",
            severity=SEVERITIES[n % len(SEVERITIES)],
            minute=n,
        )
        for n in range(first, first + count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _append_config_event(
    store: EventStore, book: ConfigBook, type_: str, data: ConfigProposedData | ConfigPromotedData
) -> None:
    """A config event as another build (or a hand-written tool) may have appended it."""
    event = CloudEvent(
        id=uuid.uuid4().hex, source="urn:test", type=type_, subject="risk", tenant="riskpipe",
        time=NOW,
    )  # fmt: skip
    await store.append(event, expected_version=book.version or NO_STREAM, data=data)


def _fingerprints(streams: Any) -> dict[int, str]:
    return {
        seq: found[0]["assessment"]["config_fingerprint"]
        for seq, found in streams.assessments.items()
    }


async def test_a_running_worker_switches_at_the_promotion_and_replay_verifies(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Evidence before the promotion is scored with the old config, after it with the new."""
    await _evidence(store, 0, 60)
    risk = store.config.stream_for("risk")
    worker = WorkerProcess(nats_server.url)
    worker.start()
    try:
        await wait_for_messages(store, risk, 60, timeout=30)
        book = await read_config_book(store)
        await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
        promoted = await promote(store, book, "tuned-1", by=OPS, reason="recall", clock=_clock)
        assert promoted.effective_from == 61
        await _evidence(store, 60, 60)
        await wait_for_messages(store, risk, 120, timeout=30)
        switched = worker.logged("analyzer.config_switched")
    finally:
        assert worker.stop() == 0
    assert switched["version"] == "tuned-1"
    assert switched["effective_from"] == 61
    assert switched["fingerprint"] == TUNED.fingerprint()
    streams = await read_streams(store)
    check_invariants(streams)
    fingerprints = _fingerprints(streams)
    assert len(fingerprints) == 120
    for seq, fingerprint in fingerprints.items():
        expected = TUNED if seq >= 61 else DEFAULT
        assert fingerprint == expected.fingerprint(), seq
    report = await replay(store, jobs=1)
    assert report.ok, report.findings[:3]
    assert report.totals.identical == 120
    what_if = await replay(store, config=TUNED, what_if=True, jobs=1)
    assert what_if.ok, what_if.findings[:3]


async def test_a_promotion_racing_a_killed_worker_keeps_one_assessment_per_evidence(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Kill -9 while evidence flows and the promotion lands; the restarted worker finishes."""
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    risk = store.config.stream_for("risk")
    worker = WorkerProcess(nats_server.url)
    worker.start()
    total, chunk = 300, 20
    try:

        async def feed() -> None:
            for first in range(0, total, chunk):
                await _evidence(store, first, chunk, entities=12)
                await asyncio.sleep(0.02)

        feeding = asyncio.create_task(feed())
        await wait_for_messages(store, store.config.stream_for("evidence"), total // 3)
        promoted = await promote(store, book, "tuned-1", by=OPS, reason="race", clock=_clock)
        await asyncio.sleep(0.05)
        worker.kill()  # SIGKILL, mid-flow
        await feeding
        worker.start()
        await wait_for_messages(store, risk, total, timeout=60)
    finally:
        worker.stop()
    assert 1 < promoted.effective_from <= total
    streams = await read_streams(store)
    check_invariants(streams)
    fingerprints = _fingerprints(streams)
    assert len(fingerprints) == total
    for seq, fingerprint in fingerprints.items():
        expected = TUNED if seq >= promoted.effective_from else DEFAULT
        assert fingerprint == expected.fingerprint(), seq
    report = await replay(store, jobs=1)
    assert report.ok, report.findings[:3]


async def test_replay_names_the_config_that_was_live_when_an_assessment_used_another(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A promotion recorded as live from evidence 1, yet the assessments used the default."""
    await _evidence(store, 0, 8)
    worker = WorkerProcess(nats_server.url, until_idle=True)
    worker.start()
    assert worker.wait() == 0
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    data = ConfigPromotedData(
        version="tuned-1", fingerprint=TUNED.fingerprint(), effective_from=5, reason="back-dated",
        by=OPS,
    )  # fmt: skip
    await _append_config_event(store, book, CONFIG_PROMOTED, data)
    report = await replay(store, jobs=1)
    assert not report.ok
    kinds = {(f.kind, f.evidence_sequence) for f in report.findings}
    assert kinds == {("config_mismatch", seq) for seq in range(5, 9)}
    detail = report.findings[0].detail
    assert f"expected config version tuned-1 ({TUNED.fingerprint()[:12]})" in detail
    assert f"recorded config {DEFAULT.fingerprint()[:12]}" in detail
    assert report.totals.identical == 4


async def test_a_promoted_config_this_build_cannot_load_holds_its_positions(
    store: EventStore,
) -> None:
    """Positions it covers raise (the projection pauses); earlier ones keep their config."""
    book = await read_config_book(store)
    alien = {**DEFAULT.model_dump(mode="json"), "analyzer_version": "99.0.0"}
    proposal = ConfigProposedData(
        version="future-1", analyzer_version="99.0.0", fingerprint="f" * 64, config=alien, by=OPS
    )
    await _append_config_event(store, book, CONFIG_PROPOSED, proposal)
    book = await read_config_book(store)
    await _evidence(store, 0, 3)
    await promote(store, book, "future-1", by=OPS, reason="from a newer build", clock=_clock)
    live = LiveConfigs(store)
    with pytest.raises(ConfigUnavailableError, match="not read yet"):
        live.at(1)
    await live.refresh()
    assert live.at(3) is None
    with pytest.raises(ConfigUnavailableError, match=r"future-1.*cannot be loaded by this build"):
        live.at(4)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    await promote(
        store, book, "tuned-1", by=OPS, reason="back", clock=_clock, kind="rollback"
    )  # no evidence since: it covers the same positions, from 4 on
    await live.refresh()
    assert live.at(4) == TUNED
    assert live.at(3) is None
