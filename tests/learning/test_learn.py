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
    EmptyTrainingError,
    NoEvidenceError,
    OneClassError,
    World,
    build_dataset,
    evaluate,
    fit,
    make_world,
    read_config_book,
)
from projections.review import DECIDED
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


def _decision(world: World, entity: str, at: float, outcome: str, n: int) -> CloudEvent:
    return CloudEvent(
        id=f"decided-{n}",
        source="urn:riskpipe:review",
        type=DECIDED,
        subject=entity,
        tenant=world.tenant,
        time=world.at(at),
        data={
            "case": 1,
            "outcome": outcome,
            "reason": "looked at it",
            "by": {"name": "ana", "role": "reviewer"},
        },
    )


async def test_review_decisions_count_as_outcomes(store: EventStore) -> None:
    """``confirmed`` is a positive at the decision's time, ``false_positive`` a negative.

    ``escalated`` is neither; a decision is labelled like a recorded outcome.
    """
    world = _world(seed=17, events=600)
    evidence = list(world.evidence_events())
    results = await store.append_many(evidence)
    assert not [r for r in results if isinstance(r, Exception)]
    first = {}  # each entity's first evidence: (its index, its time from the start)
    for i, entity in enumerate(world.entity):
        first.setdefault(world.names[int(entity)], (i, float(world.time[i])))
    (confirmed, (c_at, c_t)), (cleared, (f_at, f_t)), (escalated, (e_at, e_t)) = list(
        first.items()
    )[:3]
    decisions = [
        _decision(world, confirmed, c_t + 60.0, "confirmed", 1),
        _decision(world, cleared, f_t + 60.0, "false_positive", 2),
        _decision(world, escalated, e_t + 60.0, "escalated", 3),
    ]
    results = await store.append_many(decisions)
    assert not [r for r in results if isinstance(r, Exception)]
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    start = world.start.timestamp()
    entity_index = {e: i for i, (_, e) in enumerate(dataset.entities)}
    found = sorted(
        (dataset.entities[int(k)][1], round(float(t) - start, 3), bool(p))
        for k, t, p in zip(
            dataset.outcome_entity, dataset.outcome_time, dataset.outcome_positive, strict=True
        )
    )
    assert found == sorted(
        [(confirmed, round(c_t + 60.0, 3), True), (cleared, round(f_t + 60.0, 3), False)]
    )
    labels = dataset.labels(HORIZON, observed_until=world.until.timestamp())
    assert labels.sum() == 1
    assert int(dataset.entity[int(np.argmax(labels))]) == entity_index[confirmed]
    assert labels[c_at] == 1
    assert labels[f_at] == 0
    assert labels[e_at] == 0


async def test_no_evidence_in_the_window_and_one_class_are_refused(store: EventStore) -> None:
    """A window the log does not cover; a cut before any horizon ends; outcomes all benign."""
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
    with pytest.raises(EmptyTrainingError, match="no training example"):
        fit(dataset, horizon=HORIZON, cut=world.start.timestamp() + HORIZON)
    cut = world.start.timestamp() + 0.7 * world.span_seconds
    assert fit(dataset, horizon=HORIZON, cut=cut).split.y_train.sum() > 0


async def test_a_training_window_without_positives_is_refused(store: EventStore) -> None:
    """Training examples aplenty, every outcome benign: no fit, the error says why."""
    world = _world(seed=5, events=600)
    benign = [e for e in world.outcome_events() if not (e.data or {}).get("positive")]
    assert benign
    for batch in (list(world.evidence_events()), benign):
        assert not [r for r in await store.append_many(batch) if isinstance(r, Exception)]
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until
    )
    cut = world.start.timestamp() + 0.7 * world.span_seconds
    with pytest.raises(OneClassError, match="no positive") as refused:
        fit(dataset, horizon=HORIZON, cut=cut)
    assert refused.value.examples > 300
    assert refused.value.positives == 0


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
        (["--horizon", "inf"], "horizon must be longer than 0 seconds and finite"),
        (["--horizon", "90d"], "no training example: an example trains when its horizon"),
        (["--since", "2026-03-01T00:00:00Z", "--until", "2026-02-01T00:00:00Z"], "before --until"),
        (["--cut", "2026-01-01T13:00:00Z"], "no training example"),
        (["--since", "2025-01-01T00:00:00Z", "--until", "2025-02-01T00:00:00Z"], "no evidence"),
        (["--until", "2999-01-01T00:00:00Z"], "2999-01-01T00:00:00+00:00 is in the future"),
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


def test_a_window_without_positives_is_refused_and_nothing_is_proposed(cli: CliRunner) -> None:
    """Evidence and benign outcomes only: the command says there is no positive example."""
    world = _world(seed=13, events=600)
    benign = [e for e in world.outcome_events() if not (e.data or {}).get("positive")]

    async def publish() -> None:
        store = await EventStore.connect(
            _url(cli), schemas=build_schemas(), config=topology_config()
        )
        try:
            for batch in (list(world.evidence_events()), benign):
                assert not [r for r in await store.append_many(batch) if isinstance(r, Exception)]
        finally:
            await store.close()

    asyncio.run(publish())
    result = cli.invoke(main, ["learn", *_window(world), "--no-report"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "the training window has no positive examples (0 positive of" in text, text
    assert "(0 positive of 0)" not in text
    assert _config_version(cli) == 0


def test_a_report_that_cannot_be_written_is_one_error_and_nothing_is_proposed(
    cli: CliRunner, tmp_path: Path
) -> None:
    """--report under a plain file: one sentence naming the directory, no traceback."""
    world = _world(seed=13, events=600)
    asyncio.run(_publish_url(_url(cli), world))
    (tmp_path / "plain").write_text("a file, not a directory")
    where = tmp_path / "plain" / "report"
    result = cli.invoke(main, ["learn", *_window(world), "--report", str(where)])
    assert result.exit_code == 1
    assert f"cannot write the report in {where}" in result.output
    assert "nothing was proposed" in result.output
    assert "Traceback" not in result.output
    assert _config_version(cli) == 0


def test_two_runs_in_one_minute_without_a_version_both_propose(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default name learned-<minute> is taken: the next run is learned-<minute>-2.

    Its report goes to its own directory, not over the first run's.
    """
    world = _world(seed=19, events=600)
    asyncio.run(_publish_url(_url(cli), world))
    monkeypatch.setattr("riskpipe.cli._learn._now", lambda: world.until)
    monkeypatch.chdir(tmp_path)
    stamp = f"learned-{world.until:%Y%m%d%H%M}"
    for expected in (stamp, f"{stamp}-2"):
        result = cli.invoke(main, ["learn", *_window(world), "--json"])
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert (body["version"], body["proposed"]) == (expected, True)
        assert body["report"] == f"learn-report-{expected}/report.md"
        assert (tmp_path / body["report"]).is_file()
    named = cli.invoke(main, ["learn", *_window(world), "--version", stamp, "--no-report"])
    assert named.exit_code != 0
    assert f"config version '{stamp}' was proposed already" in named.output


def test_learn_without_the_extra_names_the_install(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without numpy/scipy/matplotlib the command says what to install."""
    import sys  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    result = cli.invoke(main, ["learn", "--since", "30d", "--horizon", "7d", "--no-report"])
    assert result.exit_code != 0
    assert "pip install 'riskpipe[learn]'" in result.output
