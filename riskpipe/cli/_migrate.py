"""``riskpipe migrate``: copy the evidence into a new store (another P, or out of an old store)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click
import structlog
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from eventstore import DEFAULT_INBOX_PREFIX, MAX_PARTITIONS
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import err_console, run
from riskpipe.cli._connect import target_connection_options, target_connection_overrides
from riskpipe.environment import describe_invalid
from riskpipe.migrate import MigrateError, MigrateSummary, migrate
from riskpipe.settings import Settings
from riskpipe.wiring import CONNECT_FIELDS

if TYPE_CHECKING:
    from riskpipe.migrate import Problem

_log = structlog.get_logger("riskpipe.migrate")
_SHOWN = 20
"""Sequences listed per kind in the text summary (``--json`` lists them all)."""


@main.command("migrate")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URL",
    help="The new store's NATS URL (comma-separated for a cluster): another server, or"
    " another account (give its credentials with the --to-* flags).",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=None,
    help="P of the new store, when this run makes it [default: RISKPIPE_PARTITIONS, else 16];"
    " a store made already must have this P.",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 5),
    default=None,
    help="Copies of every stream of the new store, when this run makes it"
    " [default: RISKPIPE_REPLICAS, else 1].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@target_connection_options
@click.pass_context
def migrate_command(
    ctx: click.Context, to: str, partitions: int | None, replicas: int | None, as_json: bool
) -> None:
    """Copy every evidence event of this store (--nats-url) into the store at --to.

    For another number of partitions, or a store made before partitions: the
    number is fixed when a store is made, so a new store (another NATS server
    or account) gets the same evidence. The new one is provisioned as
    `riskpipe init` does, if it is not yet. Each event is copied exactly as
    stored (its bytes, id and time, under its event key), in the order it was
    stored. Only evidence is copied: then run `riskpipe --nats-url URL worker
    --until-idle` to derive the assessments in the new store, and keep the
    old store for audits of what it recorded.

    The target is connected to with the same TLS files and credentials as
    the source (the global flags and RISKPIPE_* variables) unless any --to-*
    connection flag (or RISKPIPE_TO_NATS_PASSWORD or _TOKEN) is given: then
    with those alone.

    Run it again after an interruption (or to copy what was appended since):
    it checks that the target holds a copy of the source's beginning and
    copies the rest, nothing twice. Messages that are not valid evidence are
    copied as they are and listed (the new store's workers dead-letter them,
    as the old store's did); one the new store cannot hold is skipped and
    listed.

    \b
    Exit status:
      0  every message is in the new store (or was a repeat of an event that is)
      1  a message was skipped, the new store cannot be reached or used, it
         holds other evidence, or an error
    """  # noqa: D301 - \b keeps click from rewrapping the table
    app = ctx.find_object(AppContext)
    assert app is not None  # noqa: S101 - main always sets it
    target = _target_settings(app.settings, to, partitions, replicas, ctx)
    try:
        with _progress() as progress:
            task = progress.add_task("copying", total=None)

            def advanced(summary: MigrateSummary) -> None:
                progress.update(task, total=summary.until, completed=summary.read)

            summary = run(migrate(app.settings, target, partitions=partitions, progress=advanced))
    except MigrateError as exc:
        _log.error("migrate.failed", error=str(exc))
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    else:
        _print(summary)
    if not summary.ok:
        click.echo(
            f"{len(summary.skipped)} message(s) could not be copied: they are listed above;"
            " the old store keeps them",
            err=True,
        )
        sys.exit(1)


def _target_settings(
    settings: Settings, to: str, partitions: int | None, replicas: int | None, ctx: click.Context
) -> Settings:
    """The source's settings, pointed at ``to``: its own credentials if any ``--to-*`` is given."""
    update: dict[str, Any] = {"nats_url": to}
    if partitions is not None:
        update["partitions"] = partitions
    if replicas is not None:
        update["replicas"] = replicas
    given = target_connection_overrides(ctx)
    if given:
        update |= {**dict.fromkeys(CONNECT_FIELDS), "inbox_prefix": DEFAULT_INBOX_PREFIX, **given}
    try:
        return Settings.model_validate({**settings.model_dump(), **update})
    except ValidationError as exc:
        problems = describe_invalid(exc)
        shown = [p.replace("RISKPIPE_NATS_URL", "--to", 1) for p in problems]
        raise click.BadParameter("; ".join(shown), param_hint="--to or --to-*") from exc


def _print(summary: MigrateSummary) -> None:
    made = "made before partitions" if summary.source_partitions is None else None
    source_shape = made or f"{summary.source_partitions} partitions"
    click.echo(f"source  {summary.source}  evidence {source_shape}, up to sequence {summary.until}")
    created = f"; created {', '.join(summary.provisioned)}" if summary.provisioned else ""
    click.echo(f"target  {summary.target}  {summary.target_partitions} partitions{created}")
    click.echo(
        f"copied={summary.copied} already_present={summary.already_present}"
        f" duplicates={len(summary.duplicates)} invalid={len(summary.invalid)}"
        f" skipped={len(summary.skipped)} target_newer={summary.target_newer}"
    )
    if summary.duplicates:
        click.echo(
            "duplicates (an event stored again after its key was forgotten; in the target"
            f" once): {_sequences(summary.duplicates)}"
        )
    if summary.invalid:
        click.echo(
            "invalid (not valid evidence: copied as they are; the target's workers"
            f" dead-letter them): {_problems(summary.invalid)}"
        )
    if summary.skipped:
        click.echo(f"SKIPPED (not copied): {_problems(summary.skipped)}", err=True)
    if summary.target_newer:
        click.echo(
            f"the copy was complete already; the target holds {summary.target_newer}"
            " evidence event(s) appended to it since"
        )
    click.echo(
        f"Only evidence is copied. Next: `riskpipe --nats-url {summary.target} worker"
        " --until-idle` derives the assessments in the target; keep the source store for"
        " audits of what it recorded."
    )


def _sequences(sequences: list[int]) -> str:
    more = f" and {len(sequences) - _SHOWN} more" if len(sequences) > _SHOWN else ""
    return ", ".join(str(s) for s in sequences[:_SHOWN]) + more


def _problems(problems: list[Problem]) -> str:
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return "; ".join(f"sequence {p.sequence}: {p.reason}" for p in problems[:_SHOWN]) + more


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        disable=not sys.stderr.isatty(),
        transient=True,
    )
