"""``riskpipe learn``: fit pattern weights to outcomes, evaluate on a holdout, propose it."""

from __future__ import annotations

import importlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from analyzers import AnalyzerConfig, load_config
from analyzers.errors import InvalidConfigError
from projections.learning import (
    ConfigBookError,
    ConfigVersionExistsError,
    LearnError,
    propose,
    read_config_book,
)
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import (
    add_columns,
    connect_provisioned,
    optional_tenant,
    out_console,
    plain,
    run,
)
from riskpipe.cli._config import acting_actor, checked_reason, checked_version
from riskpipe.settings import parse_duration

if TYPE_CHECKING:
    from eventstore import Category, EventStore

_CATEGORIES: tuple[Category, ...] = ("config", "evidence", "outcome")
_NAME = "riskpipe-learn"
_DEFAULT_REPORT = Path("learn-report-<version>")
"""Stands for ``learn-report-<version>`` until the version's name is final."""
_EXTRA = ("numpy", "scipy.optimize", "scipy.sparse", "matplotlib")
_MISSING = (
    "riskpipe learn needs numpy, scipy and matplotlib, which are not installed:"
    " pip install 'riskpipe[learn]'"
)


class _When(click.ParamType[datetime]):
    """An ISO 8601 time (UTC without a zone), or a duration back from now: ``30d``, ``12h``."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            try:
                back = parse_duration(text)
            except ValueError:
                back = None
            if not isinstance(back, timedelta):
                self.fail(
                    f"{value!r} is neither an ISO 8601 time nor a duration like 30d", param, ctx
                )
            return datetime.now(UTC) - back
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


class _Horizon(click.ParamType[float]):
    """A duration: seconds (``3600``) or ``12h``, ``7d``; zero or less is refused later."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            found = parse_duration(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not isinstance(found, timedelta):
            self.fail(f"{value!r} is not a duration like 7d, 12h or 3600", param, ctx)
        return found.total_seconds()


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@main.command("learn")
@click.option("--since", type=_When(), required=True, help="Examples observed from TIME (or 30d).")
@click.option("--until", type=_When(), default="0s", show_default="now", help="...up to TIME.")
@click.option("--horizon", type=_Horizon(), required=True, help="Outcome horizon: 7d, 12h, 3600.")
@click.option("--cut", type=_When(), default=None, help="The holdout starts here.")
@click.option(
    "--holdout",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="Without --cut: the last share of the window held out.",
)
@click.option("--version", "version", default=None, help="[default: learned-<UTC yyyymmddHHMM>]")
@click.option(
    "--report",
    "report",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of report.md and charts [default: learn-report-<version>].",
)
@click.option("--no-report", is_flag=True, help="Write no report.")
@click.option("--propose/--no-propose", default=True, show_default=True, help="Record it.")
@click.option("--reason", default=None, help="Why: recorded with the proposal.")
@click.option("--by", default=None, help="Who acts [default: RISKPIPE_ACTOR or the user].")
@click.option(
    "--tenant",
    default=None,
    callback=optional_tenant,
    help="Learn from this tenant's entities only.",
)
@click.option("--l2", type=click.FloatRange(0.0), default=1e-3, show_default=True, help="L2.")
@click.option(
    "--base",
    "base_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Base config (TOML/YAML) [default: the live promoted config, else the defaults].",
)
@click.option("--json", "as_json", is_flag=True, help="One compact JSON line.")
@click.pass_obj
def learn(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    since: datetime,
    until: datetime,
    horizon: float,
    cut: datetime | None,
    holdout: float,
    version: str | None,
    report: Path | None,
    no_report: bool,
    propose: bool,
    reason: str | None,
    by: str | None,
    tenant: str | None,
    l2: float,
    base_file: Path | None,
    as_json: bool,
) -> None:
    """Fit pattern weights to outcomes, compare with the base on a holdout, propose a version.

    See docs/learning.md: the labels, the fit, the leakage rules and the report.
    """
    try:
        for module in _EXTRA:
            importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(_MISSING) from exc
    name = checked_version(version or f"learned-{_now():%Y%m%d%H%M}")
    actor = acting_actor(by)
    if reason is not None:
        checked_reason(reason)
    base_config: AnalyzerConfig | None = None
    if base_file is not None:
        try:
            base_config = load_config(base_file)
        except InvalidConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--base") from exc
    directory = None if no_report else (report or _DEFAULT_REPORT)
    options = _Options(
        name, since, until, horizon, cut, holdout, directory, propose, reason, tenant, l2
    )
    options.named = version is not None
    if until > _now():
        raise click.BadParameter(
            f"{until.isoformat()} is in the future: an example's label is known only once"
            " its horizon has passed, so the window ends by now (leave --until out for now)",
            param_hint="--until",
        )

    async def learned() -> dict[str, Any]:
        async with await connect_provisioned(
            app.settings, name=_NAME, categories=_CATEGORIES
        ) as store:
            return await _learn(store, options, base_config, actor)

    try:
        body = run(learned())
    except (LearnError, ConfigBookError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(body, sort_keys=True, separators=(",", ":")))
        return
    _print(body)


class _Options:
    __slots__ = (
        "cut", "directory", "holdout", "horizon", "l2", "named", "propose", "reason", "since",
        "tenant", "until", "version",
    )  # fmt: skip

    def __init__(  # noqa: PLR0913, PLR0917 - the command's options
        self,
        version: str,
        since: datetime,
        until: datetime,
        horizon: float,
        cut: datetime | None,
        holdout: float,
        directory: Path | None,
        propose: bool,
        reason: str | None,
        tenant: str | None,
        l2: float,
    ) -> None:
        self.version, self.since, self.until, self.horizon = version, since, until, horizon
        self.cut, self.holdout, self.directory, self.propose = cut, holdout, directory, propose
        self.reason, self.tenant, self.l2 = reason, tenant, l2
        self.named = True
        """``--version`` was given: a name proposed already is an error, not renamed."""


async def _learn(
    store: EventStore,
    options: _Options,
    base: AnalyzerConfig | None,
    actor: Any,  # noqa: ANN401
) -> dict[str, Any]:
    from projections.learning._dataset import build_dataset  # noqa: PLC0415 - the learn extra
    from projections.learning._errors import check_horizon  # noqa: PLC0415
    from projections.learning._fit import fit  # noqa: PLC0415
    from projections.learning._metrics import evaluate  # noqa: PLC0415

    check_horizon(options.horizon)
    book = await read_config_book(store)
    if not options.named:  # learned-<minute>, then -2, -3...: two runs in a minute both propose
        stem, n = options.version, 1
        while options.version in book.proposals:
            n += 1
            options.version = f"{stem}-{n}"
    if options.propose and options.version in book.proposals:
        raise ConfigVersionExistsError(options.version)
    if base is None:
        live = book.live
        base = book.proposal(live.version).config() if live is not None else AnalyzerConfig()
    started = time.perf_counter()
    dataset = await build_dataset(
        store, base=base, since=options.since, until=options.until, tenant=options.tenant
    )
    built = time.perf_counter()
    start, end = options.since.timestamp(), options.until.timestamp()
    cut = options.cut.timestamp() if options.cut else start + (1 - options.holdout) * (end - start)
    learned = fit(dataset, horizon=options.horizon, cut=cut, l2=options.l2)
    fitted = time.perf_counter()
    evaluation = evaluate(learned)
    timings = {
        "dataset_s": round(built - started, 3),
        "fit_s": round(fitted - built, 3),
        "evaluate_s": round(time.perf_counter() - fitted, 3),
    }
    config = learned.config
    training = learned.training_window()
    metrics = evaluation.metrics()
    body: dict[str, Any] = {
        "version": options.version,
        "fingerprint": config.fingerprint(),
        "base_fingerprint": dataset.base.fingerprint(),
        "pattern_weights": dict(config.pattern_weights),
        "severity_weights": config.severity_weights.model_dump(),
        "critical_amplification": config.critical_amplification,
        "diversity_bonus": config.diversity_bonus,
        "thresholds": config.thresholds.model_dump(),
        "training": training.model_dump(mode="json"),
        "fit": learned.summary(),
        "metrics": metrics,
        "evidence_read": dataset.evidence_read,
        "unknown_outcomes": dataset.unknown_outcomes,
        "unknown_entities": list(dataset.unknown_entities),
        "timings": timings,
        "report": None,
        "proposed": False,
    }
    if options.directory is _DEFAULT_REPORT:
        options.directory = Path(f"learn-report-{options.version}")
    if options.directory is not None:
        from projections.learning._report import write_report  # noqa: PLC0415 - matplotlib

        try:
            body["report"] = str(write_report(learned, evaluation, body, options.directory))
        except OSError as exc:  # before proposing: a run that cannot report proposes nothing
            raise LearnError(
                f"cannot write the report in {options.directory}: {exc.strerror or exc}"
                " (choose another --report DIR, or --no-report); nothing was proposed"
            ) from exc
    if options.propose:
        await propose(
            store,
            book,
            config,
            version=options.version,
            by=actor,
            clock=_now,
            training=training,
            metrics=evaluation.proposal_metrics(),
            reason=options.reason or "fitted by riskpipe learn",
        )
        body["proposed"] = True
    return body


def _cell(value: object) -> str:
    """A metric as a table cell: ``-`` where there was nothing to divide by."""
    return "-" if value is None else str(value)


def _print(body: dict[str, Any]) -> None:
    console = out_console()
    training = body["training"]
    console.print(
        f"learned {body['version']} (fingerprint {body['fingerprint'][:12]}) from"
        f" {training['examples']} training examples ({training['positives']} positive),"
        f" cut at {training['cut']}",
        highlight=False,
    )
    base, proposed = body["metrics"]["base"], body["metrics"]["proposed"]
    table = Table(title=f"holdout: {base['examples']} examples, {base['positives']} positive")
    add_columns(table, "metric", "base", "proposed")
    table.add_row("ROC-AUC", _cell(base["roc_auc"]), _cell(proposed["roc_auc"]))
    table.add_row("PR-AUC", _cell(base["pr_auc"]), _cell(proposed["pr_auc"]))
    for level in ("medium", "high", "critical"):
        b, p = base["levels"][level], proposed["levels"][level]
        for what in ("threshold", "alerts", "precision", "recall"):
            table.add_row(f"{level} {what}", _cell(b[what]), _cell(p[what]))
    console.print(table)
    weights = Table(title="weights (an unlisted pattern: 1.0)")
    add_columns(weights, "pattern", "proposed")
    for pattern, weight in body["pattern_weights"].items():
        weights.add_row(plain(pattern), f"{weight:g}")
    for severity, weight in body["severity_weights"].items():
        weights.add_row(f"severity {severity}", f"{weight:g}")
    weights.add_row("critical amplification", f"{body['critical_amplification']:g}")
    console.print(weights)
    if body["unknown_outcomes"]:
        console.print(
            f"{body['unknown_outcomes']} outcomes name entities without evidence (ignored):"
            f" {', '.join(body['unknown_entities'])}",
            highlight=False,
        )
    if body["report"]:
        console.print(f"report: {body['report']}", highlight=False)
    if body["proposed"]:
        console.print(
            f"proposed as {body['version']}; shadow it with riskpipe worker --shadow"
            f" {body['version']}, then riskpipe config promote {body['version']} --reason TEXT",
            highlight=False,
        )
    else:
        console.print("not proposed (--no-propose)")
