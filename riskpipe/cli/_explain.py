"""``riskpipe explain`` and ``riskpipe export``: an entity's timeline, and the log for auditors.

Both only read the log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from projections.audit import (
    Explanation,
    InvalidScopeError,
    explain,
    export_file,
)
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import TIME, add_columns, connect_provisioned, out_console, plain, run

if TYPE_CHECKING:
    from datetime import datetime

    from rich.text import Text

    from projections.audit import ExportFormat, TimelineEntry
    from riskpipe.settings import Settings


@main.command("explain")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--entity", required=True, help="Entity id.")
@click.option("--at", type=TIME, default=None, help="As of the evidence stored at or before TIME.")
@click.option("--seq", type=click.IntRange(min=1), default=None, help="As of evidence sequence N.")
@click.option("--projection", default=None, help="Projection name [default: risk].")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as one JSON document.")
@pass_app
def explain_command(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str,
    at: datetime | None,
    seq: int | None,
    projection: str | None,
    as_json: bool,
) -> None:
    """An entity's timeline up to a point: evidence, assessments, level changes, dead letters."""
    if at is not None and seq is not None:
        raise click.UsageError("give --at or --seq, not both")
    name = projection or app.settings.projection
    explanation = run(_explain(app.settings, tenant, entity, at=at, seq=seq, name=name))
    if as_json:
        click.echo(json.dumps(explanation.as_dict(), allow_nan=False))
        return
    _print_explanation(explanation)


async def _explain(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    tenant: str,
    entity: str,
    *,
    at: datetime | None,
    seq: int | None,
    name: str,
) -> Explanation:
    async with await connect_provisioned(settings, name="riskpipe-explain") as store:
        try:
            return await explain(store, tenant, entity, at=at, seq=seq, projection=name)
        except InvalidScopeError as exc:
            raise click.UsageError(str(exc)) from exc


def _print_explanation(explanation: Explanation) -> None:
    console = out_console()
    for line in _summary_lines(explanation):
        console.print(plain(line), highlight=False)
    table = Table(title="timeline")
    add_columns(table, "seq", "stored", "evidence", "outcome", "level", "score")
    for entry in explanation.timeline:
        table.add_row(*_timeline_cells(entry))
    console.print(table)
    current = explanation.as_dict()["current"]
    if current is None:
        click.echo("no assessment yet")
        return
    click.echo(
        f"level {current['level']} score {current['score']:.3f} confidence"
        f" {current['confidence']:.2f} as of {current['as_of']}"
        + (" (degraded)" if current["degraded"] else "")
    )
    for c in current["contributions"]:
        click.echo(f"  {c['feature']:<40} {c['share']:+.4f}")
    for line in current["recommendations"]:
        click.echo(f"  - {line}")


def _summary_lines(explanation: Explanation) -> list[str]:
    """The heading: whose timeline, up to where, and what became of its evidence."""
    if explanation.seq is not None:
        point = f"evidence sequence {explanation.seq}"
    elif explanation.at is not None:
        point = explanation.at.isoformat()
    else:
        point = "now"
    counts = explanation.counts()
    outcomes = ", ".join(
        f"{counts[key]} {label}"
        for key, label in (
            ("assessed", "assessed"),
            ("dead_lettered", "dead-lettered"),
            ("pending", "pending"),
            ("missing", "missing"),
        )
        if counts[key] or key != "missing"
    )
    changes = len(explanation.level_changes)
    return [
        f"{explanation.tenant}/{explanation.entity} as of {point}",
        f"{counts['evidence']} evidence event(s): {outcomes}; {changes} level change(s)",
    ]


def _timeline_cells(entry: TimelineEntry) -> tuple[str | Text, ...]:
    """One timeline row; the evidence id in full (only an error message is shortened)."""
    what = (
        f"{entry.evidence_id} {entry.evidence.pattern}/{entry.evidence.severity.value}"
        if entry.evidence
        else _shorten(str(entry.error), 60)
    )
    level, score, outcome = "-", "-", str(entry.outcome)
    if entry.assessment is not None:
        a = entry.assessment.data.assessment
        level = (
            f"[bold red]{a.previous_level.value} -> {a.level.value}[/]"
            if entry.level_changed
            else a.level.value
        )
        score = f"{a.score:.3f}"
    if entry.dead_letter is not None:
        outcome += f" ({entry.dead_letter.error_type or 'purged'})"
        outcome += "".join(f", {x.kind} by {x.actor}" for x in entry.actions)
    stored = entry.stored_at.isoformat(timespec="seconds")
    return (str(entry.sequence), stored, plain(what), plain(outcome), level, score)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\N{HORIZONTAL ELLIPSIS}"


# -- export ------------------------------------------------------------------------------------


@main.command("export")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--entity", default=None, help="Only this entity.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), required=True, help="File format."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write."
)
@click.option("--projection", default=None, help="Projection name [default: risk].")
@pass_app
def export_command(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str | None,
    fmt: ExportFormat,
    out: Path,
    projection: str | None,
) -> None:
    """Evidence joined with the assessment or dead letter it caused, one row per evidence."""
    name = projection or app.settings.projection
    count = run(_export(app.settings, tenant, entity=entity, fmt=fmt, out=out, name=name))
    click.echo(f"exported {count} row(s) to {out}")


async def _export(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    tenant: str,
    *,
    entity: str | None,
    fmt: ExportFormat,
    out: Path,
    name: str,
) -> int:
    async with await connect_provisioned(settings, name="riskpipe-export") as store:
        try:
            return await export_file(store, out, fmt, tenant, entity=entity, projection=name)
        except InvalidScopeError as exc:
            raise click.UsageError(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc}") from exc


# -- bench replay ------------------------------------------------------------------------------
