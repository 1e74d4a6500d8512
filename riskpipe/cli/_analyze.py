"""``riskpipe analyze`` (score an evidence log offline) and ``riskpipe bench analyze``."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
from rich.table import Table

from analyzers import (
    AnalyzerConfig,
    Assessment,
    EntityRiskState,
    Evidence,
    InvalidConfigError,
    InvalidEvidenceError,
    Severity,
    analysis_report,
    assess,
    assess_many,
    fallback_report,
    load_config,
    parse_evidence_log,
)
from riskpipe.bench import Measurement, Sample
from riskpipe.cli._app import bench, main
from riskpipe.cli._common import measurement_table, out_console

if TYPE_CHECKING:
    from collections.abc import Callable

ANALYZE_TARGET = 50_000
_TOP_CONTRIBUTIONS = 5


@main.command("analyze")
@click.argument("log", type=click.File("rb"), metavar="FILE|-")
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON object.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Analyzer config (.toml, .yaml or .yml) instead of the defaults.",
)
def analyze_command(log: IO[bytes], as_json: bool, config_path: Path | None) -> None:
    """Score the evidence log of one entity offline: a JSON array or JSON lines.

    Prints the final level, score, confidence, top contributions and
    recommendations. Invalid input exits with status 1; with --json the
    conservative fallback object (score 0.5, level medium) is printed too.
    """
    config = _config(config_path)
    try:
        evidence = parse_evidence_log(_text(log))
    except InvalidEvidenceError as exc:
        _fail(str(exc), as_json=as_json)
    assessments, _ = assess_many(EntityRiskState.initial(), evidence, config=config)
    final = assessments[-1]
    if as_json:
        click.echo(json.dumps(analysis_report(final), sort_keys=True))
        return
    out_console().print(_table(final, len(evidence)))


def _config(path: Path | None) -> AnalyzerConfig:
    if path is None:
        return AnalyzerConfig()
    try:
        return load_config(path)
    except InvalidConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _text(log: IO[bytes]) -> str:
    data = log.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"the evidence log is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        raise InvalidEvidenceError([message]) from exc


def _fail(error: str, *, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps(fallback_report(error), sort_keys=True))
        raise click.exceptions.Exit(1)
    raise click.ClickException(error)


def _table(assessment: Assessment, count: int) -> Table:
    table = Table(title=f"risk assessment of {count} evidence", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("level", f"{assessment.level} (was {assessment.previous_level})")
    table.add_row("score", f"{assessment.score:.4f}")
    table.add_row("confidence", f"{assessment.confidence:.4f}")
    table.add_row("patterns", ", ".join(assessment.patterns))
    ranked = sorted(assessment.contributions.items(), key=lambda item: (-abs(item[1]), item[0]))
    shown = [f"{name}  {share:+.4f}" for name, share in ranked[:_TOP_CONTRIBUTIONS]]
    table.add_row("top contributions", "\n".join(shown))
    table.add_row("recommendations", "\n".join(f"- {r}" for r in assessment.recommendations))
    return table


@bench.command("analyze")
@click.option("--evidence", "count", default=50_000, show_default=True, help="Evidence per run.")
@click.option("--entities", default=1000, show_default=True, help="Distinct entities.")
@click.option("--runs", default=3, show_default=True, help="Runs; the median is reported.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench_analyze(count: int, entities: int, runs: int, as_json: bool) -> None:
    """Assessments per second of the pure ``assess``, single-threaded, against the target."""
    config = AnalyzerConfig()
    evidence = synthetic_evidence(count, entities=entities)
    pure = Measurement("assess (pure)")
    persisted = Measurement("assess + state JSON round trip")
    for _ in range(runs):
        pure.add(_rate(evidence, config, keep=_keep))
        persisted.add(_rate(evidence, config, keep=_round_trip))
    figures: dict[str, Any] = {
        "evidence": count, "entities": entities, "runs": runs,
        "assess_per_s": round(pure.median), "with_state_json_per_s": round(persisted.median),
        "target": ANALYZE_TARGET,
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(figures))
        return
    title = f"analyze: {count} evidence, {entities} entities x {runs} runs"
    out_console().print(measurement_table(title, "assessments/s", (pure, persisted)))
    verdict = "meets" if pure.median >= ANALYZE_TARGET else "below"
    click.echo(
        f"assess: {pure.median:,.0f}/s on one core ({verdict} the {ANALYZE_TARGET:,}/s target)"
    )


def synthetic_evidence(count: int, *, entities: int) -> list[tuple[str, Evidence]]:
    """``count`` (entity, evidence) pairs, time-ordered per entity, from a fixed seed."""
    rng = random.Random(20_240_501)  # noqa: S311 - reproducible test data, not security
    patterns = [f"pattern_{index}" for index in range(8)]
    sources = [f"source-{index}" for index in range(5)]
    severities = list(Severity)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    pairs = []
    for index in range(count):
        clock += timedelta(seconds=rng.randint(0, 120))
        evidence = Evidence(
            event_id=f"ev-{index:08d}",
            source=rng.choice(sources),
            sequence=index + 1,
            pattern=rng.choice(patterns),
            severity=rng.choice(severities),
            confidence=round(rng.random(), 3),
            observed_at=clock,
        )
        pairs.append((f"entity-{index % entities:05d}", evidence))
    return pairs


def _keep(state: EntityRiskState) -> EntityRiskState:
    return state


def _round_trip(state: EntityRiskState) -> EntityRiskState:
    return EntityRiskState.model_validate_json(state.model_dump_json())


def _rate(
    evidence: list[tuple[str, Evidence]],
    config: AnalyzerConfig,
    *,
    keep: Callable[[EntityRiskState], EntityRiskState],
) -> Sample:
    """Fold every evidence into its entity's state; assessments per second, CPU µs each."""
    states: dict[str, EntityRiskState] = {}
    initial = EntityRiskState.initial()
    cpu = time.process_time()
    started = time.perf_counter()
    for entity, item in evidence:
        _, state = assess(states.get(entity, initial), item, config=config)
        states[entity] = keep(state)
    elapsed = time.perf_counter() - started
    return Sample(len(evidence) / elapsed, (time.process_time() - cpu) * 1e6 / len(evidence))
