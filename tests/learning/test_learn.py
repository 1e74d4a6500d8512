"""``riskpipe learn``: weights recovered from a seeded world, no leakage, clear refusals."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from analyzers import AnalyzerConfig
from eventstore import CloudEvent, EventStore
from projections.learning import (
    OUTCOME_RECORDED,
    NoEvidenceError,
    OneClassError,
    World,
    build_dataset,
    evaluate,
    fit,
    make_world,
    read_config_book,
)
from riskpipe.cli import main
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import CliRunner


pytestmark = pytest.mark.usefixtures("logging_restored")

SHARE_TOLERANCE = 0.06
"""Each pattern's share of the summed learned weights is within this of its true share."""
HORIZON = 12 * 3600.0


def _world(seed: int = 7, events: int = 12_000) -> World:
    return make_world(seed=seed, entities=600, events=events, span_seconds=60 * 86_400.0)


async def _publish(store: EventStore, world: World, extra: list[CloudEvent] | None = None) -> None:
    for batch in (list(world.evidence_events()), list(world.outcome_events()), extra or []):
        results = await store.append_many(batch)
        assert not [r for r in results if isinstance(r, Exception)]


async def _publish_url(url: str, world: World, extra: list[CloudEvent] | None = None) -> None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await _publish(store, world, extra)
    finally:
        await store.close()


def _outcome(world: World, entity: str, at: float, *, positive: bool, n: int) -> CloudEvent:
    return CloudEvent(
        id=f"planted-{n}",
        source="urn:test",
        type=OUTCOME_RECORDED,
        subject=entity,
        tenant=world.tenant,
        time=world.at(at),
        data={"outcome": "fraud_confirmed" if positive else "benign", "positive": positive},
    )


async def test_recovers_the_true_weights_and_beats_the_defaults(store: EventStore) -> None:
    """Relative weights within SHARE_TOLERANCE of the truth; a better holdout PR-AUC."""
    world = _world()
    await _publish(store, world)
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    assert len(dataset) == len(world.time)
    cut = world.start.timestamp() + 0.7 * world.span_seconds
    learned = fit(dataset, horizon=HORIZON, cut=cut, l2=1e-4)
    true = np.array([world.true_weights[p] for p in dataset.patterns])
    found = np.array([learned.weights[p] for p in dataset.patterns])
    shares = found / found.sum()
    assert np.abs(shares - true / true.sum()).max() <= SHARE_TOLERANCE, (shares, true / true.sum())
    assert np.argmax(found) == np.argmax(true)
    config = learned.config
    assert config.fingerprint() != AnalyzerConfig().fingerprint()
    assert set(config.pattern_weights) == set(world.patterns)
    # the proposed weights are the fitted ones up to one common scale
    ratio = np.array([config.pattern_weights[p] for p in dataset.patterns]) / np.maximum(
        found, 1e-9
    )
    assert np.allclose(ratio[found > 0.1], learned.scale, rtol=1e-4)
    metrics = evaluate(learned).metrics()
    assert metrics["proposed"]["pr_auc"] > metrics["base"]["pr_auc"] + 0.02
    assert metrics["proposed"]["roc_auc"] > metrics["base"]["roc_auc"]
    # the alert volume on training is kept: the same share at each level, near enough
    base_scores = dataset.config_scores(AnalyzerConfig())[learned.split.train]
    scores = dataset.config_scores(config)[learned.split.train]
    for level in ("medium", "high"):
        before = float(np.mean(base_scores >= getattr(AnalyzerConfig().thresholds, level)))
        after = float(np.mean(scores >= getattr(config.thresholds, level)))
        assert abs(before - after) < 0.01, (level, before, after)


SEVERITY_TOLERANCE = 0.1
"""Low, medium and high severity weights within this of the truth (critical: twice it).

Critical evidence also feeds the critical amplification, so the critical
weight and the amplification share what critical evidence explains.
"""


async def test_recovers_the_true_severity_weights(store: EventStore) -> None:
    """A world whose severities weigh unlike the defaults: the fit finds its weights."""
    truth = {"low": 0.3, "medium": 0.4, "high": 0.5, "critical": 0.8}  # sums to the defaults' 2
    world = make_world(
        seed=8, entities=600, events=12_000, span_seconds=60 * 86_400.0, true_severity=truth
    )
    await _publish(store, world)
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    cut = world.start.timestamp() + 0.7 * world.span_seconds
    learned = fit(dataset, horizon=HORIZON, cut=cut, l2=1e-4)
    found = learned.config.severity_weights.model_dump()
    assert found == learned.severity_weights
    for severity, weight in truth.items():
        limit = SEVERITY_TOLERANCE * (2 if severity == "critical" else 1)
        assert abs(found[severity] - weight) <= limit, (severity, found, truth)
    defaults = AnalyzerConfig().severity_weights.model_dump()
    assert abs(found["low"] - defaults["low"]) > SEVERITY_TOLERANCE  # not the defaults kept
    metrics = evaluate(learned).metrics()
    assert metrics["proposed"]["pr_auc"] > metrics["base"]["pr_auc"]


async def test_an_outcome_after_the_cut_changes_nothing_in_the_fit(store: EventStore) -> None:
    """A positive planted after the cut for a training entity: same weights, same fingerprint."""
    world = _world(seed=3, events=4000)
    await _publish(store, world)
    cut = world.start.timestamp() + 0.6 * world.span_seconds
    before = fit(
        await build_dataset(store, base=AnalyzerConfig(), since=world.start, until=world.until),
        horizon=HORIZON,
        cut=cut,
    )
    train_entity = world.names[int(world.entity[0])]
    planted = [
        _outcome(world, train_entity, cut - world.start.timestamp() + s, positive=True, n=n)
        for n, s in enumerate((1.0, 3600.0, 86_400.0))
    ]
    assert (await store.append_many(planted))[0].sequence > 0  # type: ignore[union-attr]
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    assert len(dataset.outcome_time) == len(world.outcome_time) + 3  # it is read...
    after = fit(dataset, horizon=HORIZON, cut=cut)
    assert after.weights == before.weights  # ...and ignored by the fit
    assert after.config.fingerprint() == before.config.fingerprint()
    # the same outcome before the cut does change the fit: the test can fail
    early = _outcome(world, train_entity, float(world.time[0]) + 60.0, positive=True, n=9)
    await store.append_many([early])
    moved = fit(
        await build_dataset(store, base=AnalyzerConfig(), since=world.start, until=world.until),
        horizon=HORIZON,
        cut=cut,
    )
    assert moved.config.fingerprint() != before.config.fingerprint()


async def test_no_evidence_in_the_window_and_one_class_are_refused(store: EventStore) -> None:
    """A window the log does not cover; a cut before any positive outcome."""
    world = _world(seed=5, events=600)
    await _publish(store, world)
    with pytest.raises(NoEvidenceError):
        await build_dataset(
            store,
            base=AnalyzerConfig(),
            since=world.until + timedelta(days=1),
            until=world.until + timedelta(days=2),
        )
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    with pytest.raises(OneClassError, match="no positive"):
        fit(dataset, horizon=HORIZON, cut=world.start.timestamp() + HORIZON)


# -- the command ---------------------------------------------------------------------------


def _url(cli: CliRunner) -> str:
    return cli.env["RISKPIPE_NATS_URL"] or ""


def _window(world: World) -> list[str]:
    return [
        "--since", world.start.isoformat(), "--until", world.until.isoformat(),
        "--horizon", "12h",
    ]  # fmt: skip


def _config_version(cli: CliRunner) -> int:
    async def read() -> int:
        store = await EventStore.connect(
            _url(cli), schemas=build_schemas(), config=topology_config()
        )
        try:
            return (await read_config_book(store)).version
        finally:
            await store.close()

    return asyncio.run(read())


def test_learn_end_to_end_json_report_and_proposal(cli: CliRunner, tmp_path: Path) -> None:
    """One JSON line; report.md and non-empty PNGs; the proposal shows in config show."""
    world = _world(seed=11, events=3000)
    ghost = _outcome(world, "nobody-here", 3600.0, positive=True, n=1)
    asyncio.run(_publish_url(_url(cli), world, [ghost]))
    report = tmp_path / "report"
    result = cli.invoke(
        main,
        ["learn", *_window(world), "--version", "learned-test", "--report", str(report), "--json"],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    body: dict[str, Any] = json.loads(lines[0])
    assert body["proposed"] is True
    assert body["version"] == "learned-test"
    assert body["unknown_outcomes"] == 1
    assert body["unknown_entities"] == [f"{world.tenant}/nobody-here"]
    assert set(body["metrics"]) == {"base", "proposed"}
    assert body["training"]["positives"] > 0
    assert body["report"] == str(report / "report.md")
    text = (report / "report.md").read_text()
    assert "PR-AUC" in text
    assert "None" not in text  # nothing to divide by reads as "-"
    for severity, weight in body["severity_weights"].items():
        assert f"| severity {severity} | " in text
        assert f" | {weight:g} |" in text
    for chart in ("pr.png", "roc.png", "calibration.png", "weights.png"):
        assert (report / chart).stat().st_size > 1000, chart
    shown = cli.invoke(main, ["config", "show", "learned-test", "--json"])
    assert shown.exit_code == 0, shown.output
    proposal = json.loads(shown.stdout)
    assert proposal["fingerprint"] == body["fingerprint"]
    assert proposal["config"]["pattern_weights"] == body["pattern_weights"]
    assert proposal["training"]["examples"] == body["training"]["examples"]
    assert proposal["metrics"]["pr_auc"] == body["metrics"]["proposed"]["pr_auc"]
    assert proposal["by"] == {"name": "olga", "role": "operator"}
    # the same inputs again (not proposed): the same config
    again = cli.invoke(main, ["learn", *_window(world), "--no-propose", "--no-report", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["fingerprint"] == body["fingerprint"]
    human = cli.invoke(main, ["learn", *_window(world), "--no-propose", "--no-report"])
    assert human.exit_code == 0, human.output
    assert "PR-AUC" in human.output
    assert "nobody-here" in human.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--horizon", "0"], "horizon must be longer than 0"),
        (["--since", "2026-03-01T00:00:00Z", "--until", "2026-02-01T00:00:00Z"], "before --until"),
        (["--cut", "2026-01-01T13:00:00Z"], "no positive"),
        (["--since", "2027-01-01T00:00:00Z", "--until", "2027-02-01T00:00:00Z"], "no evidence"),
        (["--tenant", "two words"], "invalid tenant 'two words'"),
        (["--tenant", "nobody"], "no evidence"),
    ],
)
def test_bad_inputs_are_refused_and_nothing_is_proposed(
    cli: CliRunner, args: list[str], message: str
) -> None:
    """Each refusal is one clear message, a non-zero exit, and nothing appended to CONFIGS."""
    world = _world(seed=13, events=600)
    asyncio.run(_publish_url(_url(cli), world))
    before = _config_version(cli)
    result = cli.invoke(main, ["learn", *_window(world), *args, "--no-report"])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output
    assert _config_version(cli) == before


def test_learn_without_the_extra_names_the_install(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without numpy/scipy/matplotlib the command says what to install."""
    import sys  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    result = cli.invoke(main, ["learn", "--since", "30d", "--horizon", "7d", "--no-report"])
    assert result.exit_code != 0
    assert "pip install 'riskpipe[learn]'" in result.output
