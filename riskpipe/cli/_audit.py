"""``riskpipe replay``: re-derive every assessment from the log and compare.

It only reads the log: ephemeral consumers without acknowledgements, nothing
published.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from analyzers import AnalyzerConfig, InvalidConfigError, load_config
from projections.audit import (
    InvalidScopeError,
    ReplayPartError,
    ReplayReport,
    ReplayScope,
    first_stored_after,
    replay,
)
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import (
    TIME,
    add_columns,
    connect_provisioned,
    err_console,
    out_console,
    plain,
    run,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from rich.progress import Task

    from eventstore import EventStore
    from riskpipe.settings import Settings


@main.command("replay")
@click.option("--tenant", default=None, help="Only this tenant's evidence.")
@click.option("--entity", default=None, help="Only this entity (needs --tenant).")
@click.option(
    "--from-seq", type=click.IntRange(min=1), default=None, help="First evidence sequence."
)
@click.option("--since", type=TIME, default=None, help="First evidence stored at or after TIME.")
@click.option(
    "--until-seq", type=click.IntRange(min=1), default=None, help="Last evidence sequence."
)
@click.option("--until", type=TIME, default=None, help="Last evidence stored at or before TIME.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="What-if: re-score with this analyzer config (.toml/.yaml) and report level changes.",
)
@click.option(
    "--strict", is_flag=True, help="Fail on assessments from another analyzer version too."
)
@click.option("--projection", default=None, help="Projection name [default: risk].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON report to FILE.",
)
@click.option("--limit", default=50, show_default=True, help="Rows listed per table.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes replaying the scope's entities in parts [default: one per CPU, up to 4,"
    " as the scope's size warrants; 1: this process alone].",
)
@pass_app
def replay_command(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str | None,
    entity: str | None,
    from_seq: int | None,
    since: datetime | None,
    until_seq: int | None,
    until: datetime | None,
    config_path: Path | None,
    strict: bool,
    projection: str | None,
    as_json: bool,
    report_path: Path | None,
    limit: int,
    jobs: int | None,
) -> None:
    """Re-derive every assessment from the evidence log and verify it against the record.

    With --config it is a what-if: history is re-scored with that config and
    the report counts how levels would have changed; nothing is ever published.

    \b
    Exit status:
      0  nothing differs and nothing is missing (a what-if: it ran)
      1  a finding (an assessment differs, is missing or extra, ...), or an
         error: NATS unreachable, not provisioned, a bad --config
      2  a usage error (contradictory bounds, an entity without --tenant)
    """  # noqa: D301 - \b keeps click from rewrapping the table
    if from_seq is not None and since is not None:
        raise click.UsageError("give --from-seq or --since, not both")
    if until_seq is not None and until is not None:
        raise click.UsageError("give --until-seq or --until, not both")
    config = _analyzer_config(config_path)
    bounds = _Bounds(tenant, entity, from_seq, since, until_seq, until)
    bounds.check()
    report = run(
        _replay(app.settings, bounds, config, what_if=config_path is not None, strict=strict,
                projection=projection or app.settings.projection, jobs=jobs)
    )  # fmt: skip
    document = report.as_dict()
    if report_path is not None:
        report_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(document))
    else:
        _print_replay(report, limit)
    sys.exit(0 if report.ok else 1)


def _analyzer_config(path: Path | None) -> AnalyzerConfig:
    if path is None:
        return AnalyzerConfig()
    try:
        return load_config(path)
    except InvalidConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class _Bounds:
    """What to replay, as given: sequences, or times to turn into sequences."""

    tenant: str | None
    entity: str | None
    from_seq: int | None
    since: datetime | None
    until_seq: int | None
    until: datetime | None

    def check(self) -> None:
        """Refuse a scope that no log could make valid, before connecting to any server.

        Raises:
            click.UsageError: an entity without its tenant, a bad token, an empty range.
        """
        try:
            ReplayScope(self.tenant, self.entity, self.from_seq or 1, self.until_seq)
        except InvalidScopeError as exc:
            raise click.UsageError(str(exc)) from exc

    async def scope(self, store: EventStore) -> ReplayScope:
        """The scope, with times resolved to evidence sequences by when they were stored."""
        from_seq, until_seq = self.from_seq, self.until_seq
        if self.since is not None:
            from_seq = await first_stored_after(store, self.since, inclusive=True)
        if self.until is not None:
            until_seq = await first_stored_after(store, self.until, inclusive=False) - 1
        timed_range = self.since is not None or self.until is not None
        if timed_range and from_seq and until_seq is not None and until_seq < from_seq:
            raise click.UsageError("no evidence was stored in that time range")
        try:
            return ReplayScope(self.tenant, self.entity, from_seq or 1, until_seq)
        except InvalidScopeError as exc:
            raise click.UsageError(str(exc)) from exc


async def _replay(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    bounds: _Bounds,
    config: AnalyzerConfig,
    *,
    what_if: bool,
    strict: bool,
    projection: str,
    jobs: int | None,
) -> ReplayReport:
    async with await connect_provisioned(settings, name="riskpipe-replay") as store:
        scope = await bounds.scope(store)
        with _progress() as progress:
            try:
                return await replay(
                    store, scope=scope, config=config, what_if=what_if, projection=projection,
                    strict=strict, progress=progress, jobs=jobs,
                )  # fmt: skip
            except ReplayPartError as exc:
                cause = f" ({exc.__cause__!r})" if exc.__cause__ else ""
                raise click.ClickException(
                    f"{exc}{cause}; there is no report. `--jobs 1` replays in this process alone."
                ) from exc


_REDRAW_SECONDS = 0.1


class _Rate(ProgressColumn):
    """Evidence positions per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} evidence/s" if speed else "- evidence/s", style="cyan")


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar with rate and ETA on stderr, only when stderr is a terminal."""
    console = err_console()
    if not console.is_terminal:
        yield None
        return
    columns = (BarColumn(), MofNCompleteColumn(), _Rate(), TimeRemainingColumn())
    # Redrawn from the replay's own calls, not by rich's refresh thread: a replay
    # in parts forks, and forking a process with threads can deadlock the child.
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as bar:
        task = bar.add_task("replay", total=None)
        drawn = 0.0

        def update(done: int, total: int) -> None:
            nonlocal drawn
            bar.update(task, completed=done, total=total)
            if done == total or time.monotonic() - drawn >= _REDRAW_SECONDS:
                bar.refresh()
                drawn = time.monotonic()

        yield update


def _print_replay(report: ReplayReport, limit: int) -> None:
    console = out_console()
    scope = report.scope
    what = f"{scope.tenant or 'every tenant'}" + (f"/{scope.entity}" if scope.entity else "")
    processes = f", {report.jobs} processes" if report.jobs > 1 else ""
    console.print(
        plain(
            f"{report.mode} replay of {what}, evidence {scope.from_seq}..{scope.until_seq or '-'},"
            f" analyzer {report.analyzer_version}, config {report.config_fingerprint[:12]}"
            f"{processes}"
        )
    )
    console.print(_entities_table(report, limit))
    for finding in report.findings[:limit]:
        where = f"{finding.tenant}/{finding.entity} evidence {finding.evidence_sequence or '-'}"
        risk = f" (risk seq {finding.assessment_sequence})" if finding.assessment_sequence else ""
        console.print(
            Text.assemble((finding.kind, "bold red"), f" {where}{risk}: {finding.detail}")
        )
    if report.level_changes is not None:
        _print_level_changes(report, limit)
    t = report.totals
    rate = t.evidence / report.elapsed_seconds if report.elapsed_seconds else 0.0
    verdict = "OK" if report.ok else f"FAILED ({report.failures} finding(s))"
    click.echo(
        f"checked={t.checked} identical={t.identical} differing={t.differing}"
        f" config_mismatch={t.config_mismatch} version_mismatch={t.version_mismatch}"
        f" rescored={t.rescored} extra={t.extra} unreadable={t.unreadable} missing={t.missing}"
        f" dead_lettered={t.dead_lettered} pending={t.pending}"
        f" in {report.elapsed_seconds:.1f}s ({rate:,.0f} evidence/s): {verdict}"
    )


def _entities_table(report: ReplayReport, limit: int) -> Table:
    rows = sorted(
        report.entities.values(), key=lambda e: (e.first_finding is None, e.tenant, e.entity)
    )
    table = Table(title=f"entities ({len(rows)}; with findings first)")
    columns = ("tenant/entity", "evidence", "checked", "identical", "problems", "dead-lettered",
               "pending", "first finding")  # fmt: skip
    add_columns(table, *columns)
    for e in rows[:limit]:
        c, first = e.counts, e.first_finding
        note = f"{first.kind}: {first.detail}" if first else "-"
        table.add_row(
            plain(f"{e.tenant}/{e.entity}"), str(c.evidence), str(c.checked), str(c.identical),
            str(c.failures(strict=report.strict)), str(c.dead_lettered), str(c.pending),
            plain(note[:110]),
        )  # fmt: skip
    if len(rows) > limit:
        table.caption = f"... and {len(rows) - limit} more (--limit, or --json for all)"
    return table


def _print_level_changes(report: ReplayReport, limit: int) -> None:
    changes = report.level_changes
    assert changes is not None  # noqa: S101 - checked by the caller
    console = out_console()
    table = Table(title=f"what-if level changes: {changes.upgrades} up, {changes.downgrades} down")
    for col in ("recorded -> what-if", "assessments"):
        table.add_column(col)
    for transition, count in changes.as_dict()["transitions"].items():
        table.add_row(transition, str(count))
    table.add_row("unchanged", str(changes.unchanged))
    console.print(table)
    affected = changes.affected()
    entities = Table(title=f"entities affected ({len(affected)})")
    add_columns(entities, "tenant/entity", "changed", "recorded final", "what-if final")
    for (tenant, entity), change in list(affected.items())[:limit]:
        entities.add_row(
            plain(f"{tenant}/{entity}"), str(change.changed), str(change.recorded_final),
            str(change.what_if_final),
        )  # fmt: skip
    console.print(entities)


# -- explain -----------------------------------------------------------------------------------
