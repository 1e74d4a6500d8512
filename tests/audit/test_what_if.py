"""What-if: history re-scored with another config, level changes counted, nothing written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import run_worker

from analyzers import load_config
from projections.audit import replay

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer

LOWER = "[thresholds]\nmedium = 0.1\nhigh = 0.2\ncritical = 0.3\n"


async def _publish(store: EventStore, count: int, *, start: int = 0) -> None:
    events = [
        evidence(f"w{i}", entity=f"e{i % 5}", minute=i, severity=("low", "medium")[i % 2])
        for i in range(start, start + count)
    ]
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def test_lower_thresholds_report_upgrades(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    """Lower thresholds upgrade levels; the report counts them per transition and entity."""
    await _publish(store, 30)
    await run_worker(store, nats_server.url)
    path = tmp_path / "lower.toml"
    path.write_text(LOWER)
    before = await store.stream_state(store.config.stream_for("risk"))
    report = await replay(store, config=load_config(path), what_if=True)
    assert report.mode == "what-if"
    assert report.ok
    changes = report.level_changes
    assert changes is not None
    assert changes.upgrades > 0
    assert changes.downgrades == 0
    assert changes.upgrades + changes.unchanged == 30
    assert report.totals.rescored == 30
    assert {entity for _, entity in changes.affected()} <= {f"e{i}" for i in range(5)}
    assert changes.affected()
    document = changes.as_dict()
    assert sum(document["transitions"].values()) == changes.upgrades
    assert await store.stream_state(store.config.stream_for("risk")) == before


async def test_the_config_in_use_verifies_and_re_scores_the_rest(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    """Assessments scored with the what-if config are verified; older ones are re-scored."""
    path = tmp_path / "lower.toml"
    path.write_text(LOWER)
    await _publish(store, 10)
    await run_worker(store, nats_server.url)
    await _publish(store, 10, start=10)
    await run_worker(store, nats_server.url, analyzer_config=path)
    report = await replay(store, config=load_config(path), what_if=True)
    assert report.ok, report.findings
    assert (report.totals.rescored, report.totals.identical) == (10, 10)
    assert report.totals.config_mismatch == 0
