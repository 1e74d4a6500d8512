"""``riskpipe shadow report``: compare a shadow run of a proposed config with live.

It only reads the log: live assessments (``RISK``), the version's shadow
assessments (``SHADOW``) and the config log (``CONFIGS``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.table import Table

from analyzers import RiskLevel
from projections.learning import UnknownConfigVersionError
from projections.shadow import (
    EntityChange,
    InvalidShadowVersionError,
    ShadowNotRunError,
    ShadowReport,
    shadow_projection,
    shadow_report,
)
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import (
    TIME,
    add_columns,
    connect_provisioned,
    optional_tenant,
    out_console,
    plain,
    run,
)

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console

    from riskpipe.settings import Settings

_LEVELS = tuple(RiskLevel)


@main.group()
def shadow() -> None:
    """Shadow runs: a proposed analyzer config scoring live evidence beside the live one."""


def _version(ctx: click.Context, param: click.Parameter, value: str) -> str:
    del ctx, param
    try:
        shadow_projection(value)
    except InvalidShadowVersionError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@shadow.command("report")
@click.option(
    "--version",
    "version",
    required=True,
    callback=_version,
    help="The proposed config version run in shadow (`riskpipe worker --shadow VERSION`).",
)
@click.option("--since", type=TIME, default=None, help="Evidence stored at or after TIME.")
@click.option("--until", type=TIME, default=None, help="Evidence stored at or before TIME.")
@click.option(
    "--tenant", default=None, callback=optional_tenant, help="Only this tenant's evidence."
)
@click.option(
    "--threshold",
    type=click.Choice([level.value for level in _LEVELS]),
    default=RiskLevel.HIGH.value,
    show_default=True,
    help="The level at and above which an assessment is an alert (flagged, cleared).",
)
@click.option("--projection", default=None, help="The live projection's name [default: risk].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON line.")
@pass_app
def report_command(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    version: str,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    threshold: str,
    projection: str | None,
    as_json: bool,
) -> None:
    """Compare live assessments with a shadow run's over a period, evidence by evidence.

    The period selects evidence by the time it was stored (both sides are
    compared on the same evidence). Reports the level changes live -> shadow,
    the entities the shadow would have flagged (reached the threshold while
    live stayed below it) or cleared (the reverse), alert volume on both
    sides, the score differences, and the evidence the shadow has not yet
    assessed (its lag).

    \b
    Exit status:
      0  the report was made
      1  an error: the version was never proposed or never run in shadow,
         NATS unreachable, not provisioned
      2  a usage error (a bad version name, contradictory period)
    """  # noqa: D301 - \b keeps click from rewrapping the table
    if since is not None and until is not None and until < since:
        raise click.UsageError("--until is before --since: the period is empty")
    report = run(
        _report(app.settings, version, since=since, until=until, tenant=tenant,
                threshold=RiskLevel(threshold), projection=projection or app.settings.projection)
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.as_dict(), separators=(",", ":")))
    else:
        _print(out_console(), report)


async def _report(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    version: str,
    *,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    threshold: RiskLevel,
    projection: str,
) -> ShadowReport:
    categories = ("evidence", "risk", "shadow", "config")
    async with await connect_provisioned(
        settings, name="riskpipe-shadow-report", categories=categories
    ) as store:
        try:
            return await shadow_report(
                store, version, live_projection=projection, since=since, until=until,
                tenant=tenant, threshold=threshold,
            )  # fmt: skip
        except (UnknownConfigVersionError, ShadowNotRunError) as exc:
            raise click.ClickException(str(exc)) from exc


def _print(console: Console, report: ShadowReport) -> None:
    doc = report.as_dict()
    period = doc["period"]
    console.print(
        plain(
            f"Shadow run {doc['shadow_projection']} (config {report.version},"
            f" fingerprint {report.fingerprint[:12]}) against live projection"
            f" {report.live_projection}"
        )
    )
    scope = f"evidence {report.from_seq}..{report.until_seq}, by the time it was stored"
    if period["since"] or period["until"]:
        scope += f" ({period['since'] or 'start'} .. {period['until'] or 'now'})"
    if report.tenant:
        scope += f", tenant {report.tenant}"
    console.print(plain(scope))
    console.print(
        plain(
            f"compared {report.compared} evidence; live assessed {report.live_assessments},"
            f" shadow {report.shadow_assessments}; not yet assessed by the shadow"
            f" {report.shadow_missing} (its last: evidence {report.shadow_last_evidence}),"
            f" not yet live {report.live_missing}"
        )
    )
    console.print(
        plain(f"level changed on {report.raised + report.lowered} evidence:"
              f" {report.raised} higher, {report.lowered} lower")
    )  # fmt: skip
    matrix = Table(title="levels: live (rows) -> shadow (columns)")
    add_columns(matrix, "live \\ shadow", *(level.value for level in _LEVELS))
    for live in _LEVELS:
        matrix.add_row(live.value, *(str(report.matrix[live, s]) for s in _LEVELS))
    console.print(matrix)
    alerts = Table(title=f"alert volume (level >= {report.threshold.value})")
    add_columns(alerts, "", "live", "shadow")
    alerts.add_row("assessments", str(report.live_alerts), str(report.shadow_alerts))
    alerts.add_row("entities", str(report.live_alert_entities), str(report.shadow_alert_entities))
    console.print(alerts)
    delta = report.delta()
    console.print(plain("|score delta|: " + ", ".join(f"{k} {v:.4f}" for k, v in delta.items())))
    level = report.threshold.value
    for title, changes in (
        (f"flagged: {len(report.flagged)} entities reach {level} in shadow only", report.flagged),
        (f"cleared: {len(report.cleared)} entities reach {level} live only", report.cleared),
    ):
        console.print(plain(title))
        if changes:
            console.print(_examples(changes))
    if fingerprints := sorted(set(report.shadow_fingerprints) - {report.fingerprint}):
        console.print(
            plain("warning: shadow assessments with another fingerprint than the proposal's: "
                  + ", ".join(f[:12] for f in fingerprints))
        )  # fmt: skip


def _examples(changes: list[EntityChange]) -> Table:
    table = Table(title="examples")
    add_columns(table, "tenant/entity", "live", "shadow", "live score", "shadow score", "evidence")
    for change in changes[:5]:
        table.add_row(
            plain(f"{change.tenant}/{change.entity}"),
            change.live_level.value,
            change.shadow_level.value,
            f"{change.live_score:.3f}",
            f"{change.shadow_score:.3f}",
            str(change.evidence),
        )
    return table
