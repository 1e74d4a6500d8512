"""Promotions with running workers: the switch at the recorded position, restarts, replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
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
    CONFIG_PROMOTION_STARTED,
    CONFIG_PROPOSED,
    ConfigBook,
    ConfigPromotedData,
    ConfigPromotionStartedData,
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
    store: EventStore,
    book: ConfigBook,
    type_: str,
    data: ConfigProposedData | ConfigPromotedData | ConfigPromotionStartedData,
) -> None:
    """A config event as another build (or a hand-written tool) may have appended it."""
    event = CloudEvent(
        id=uuid.uuid4().hex, source="urn:test", type=type_, subject="risk", tenant="riskpipe",
        time=NOW,
    )  # fmt: skip
    await store.append(event, expected_version=book.version or NO_STREAM, data=data)


def _config_list(url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "riskpipe", "--nats-url", url, "config", "list", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(done.stdout)
    return found


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


@pytest.mark.slow
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


async def test_evidence_stored_while_a_promotion_is_under_way_waits_for_it(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidence stored after the promotion read the evidence stream, before it was recorded.

    Its position is at or past the promotion's ``effective_from``, yet a
    running worker fetches it before the promotion is in the log (the round
    trip is slowed here to make that certain). Scoring it with the config the
    worker knew would break the log's word: it waits for the promotion.
    """
    await _evidence(store, 0, 30)
    risk = store.config.stream_for("risk")
    worker = WorkerProcess(nats_server.url)
    worker.start()
    try:
        await wait_for_messages(store, risk, 30, timeout=30)
        book = await read_config_book(store)
        await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
        stream_info = store.client.stream_info

        async def slow_round_trip(stream: str) -> dict[str, Any] | None:
            info = await stream_info(stream)
            await _evidence(store, 30, 30)  # stored after the read, before the promotion is
            await asyncio.sleep(1.5)  # the worker fetches them meanwhile
            return info

        monkeypatch.setattr(store.client, "stream_info", slow_round_trip)
        promoted = await promote(store, book, "tuned-1", by=OPS, reason="race", clock=_clock)
        monkeypatch.undo()
        await wait_for_messages(store, risk, 60, timeout=30)
        held = worker.events("analyzer.config_promotion_pending", projection=None)
    finally:
        assert worker.stop() == 0
    assert promoted.effective_from == 31
    streams = await read_streams(store)
    check_invariants(streams)
    fingerprints = _fingerprints(streams)
    assert len(fingerprints) == 60
    for seq, fingerprint in fingerprints.items():
        expected = TUNED if seq >= promoted.effective_from else DEFAULT
        assert fingerprint == expected.fingerprint(), seq
    report = await replay(store, jobs=1)
    assert report.ok, report.findings[:3]
    assert report.totals.identical == 60
    assert [line["version"] for line in held][:1] == ["tuned-1"]  # it waited


async def test_a_promotion_that_died_half_way_holds_evidence_until_one_is_recorded(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A started promotion never recorded: workers wait; promoting again ends it."""
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    started = ConfigPromotionStartedData(version="tuned-1", by=OPS)
    await _append_config_event(store, book, CONFIG_PROMOTION_STARTED, started)
    await _evidence(store, 0, 20)
    risk = store.config.stream_for("risk")
    worker = WorkerProcess(nats_server.url)
    worker.start()
    try:
        worker.logged("projection.pausing")
        await asyncio.sleep(1.0)
        held = await read_streams(store)
        assert not held.assessments  # nothing scored while the promotion is unrecorded
        book = await read_config_book(store)
        assert book.pending is not None
        listed = _config_list(nats_server.url)
        assert listed["pending"]["version"] == "tuned-1"
        promoted = await promote(store, book, "tuned-1", by=OPS, reason="again", clock=_clock)
        assert book.pending is None
        await wait_for_messages(store, risk, 20, timeout=30)
    finally:
        assert worker.stop() == 0
    assert promoted.effective_from == 21  # the 20 were stored before this promotion read
    fingerprints = _fingerprints(await read_streams(store))
    assert set(fingerprints.values()) == {DEFAULT.fingerprint()}
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


async def test_refreshes_asked_at_once_share_a_look_and_a_later_ask_looks_again(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixteen partitions asking at once share a look; a promotion made meanwhile is seen.

    The look under way began before the promotion, so the sixteen asked after it
    share one more: two leader requests, not seventeen one behind the other.
    """
    live = LiveConfigs(store)
    await live.refresh()
    asked = store.client.leader_last_sequence
    looks: list[int] = []
    gate = asyncio.Event()

    async def slow_look(stream: str, subject: str) -> int | None:
        looks.append(1)
        await gate.wait()  # the leader's answer takes a while
        return await asked(stream, subject)

    monkeypatch.setattr(store.client, "leader_last_sequence", slow_look)
    first = asyncio.create_task(live.refresh())  # a look under way, begun before the promotion
    await asyncio.sleep(0.05)
    book = await read_config_book(store)
    await propose(store, book, TUNED, version="tuned-1", by=OPS, clock=_clock)
    await _evidence(store, 0, 2)
    await promote(store, book, "tuned-1", by=OPS, reason="tuned", clock=_clock)
    later = [asyncio.create_task(live.refresh()) for _ in range(16)]  # all asked after it
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *later)
    assert len(looks) == 2, "the first look, then one look shared by the sixteen asked after it"
    assert live.at(3) == TUNED  # the shared look began after the promotion was recorded
    assert live.at(2) is None
