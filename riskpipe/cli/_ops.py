"""Operator commands: ``status`` and ``assessments``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.table import Table

from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import add_columns, connect_provisioned, out_console, plain, run
from riskpipe.status import LeaseOwnership, PipelineStatus, pipeline_status

_SHOWN = 10
"""Foreign sequences listed per stream; the count is always complete."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--projection", default=None, help="Projection name [default: risk].")
@pass_app
def status(app: AppContext, as_json: bool, projection: str | None) -> None:
    """Streams, consumer lag, DLQ depth, checkpoint, lease owners, and the evidence accounting.

    Assessments are counted by the evidence they answer, so status reads
    the RISK stream once (its cost grows with the stream). The lease owners
    show which worker holds which partitions now, and which none holds.

    \b
    Exit status:
      0  evidence = assessed + dead-lettered + pending, or messages in flight
         are counted twice for a moment (the numbers settle by themselves)
      1  an error: NATS unreachable, or not provisioned (run `riskpipe init`)
      2  evidence is unaccounted for: missing from every count (in flight or
         not), or any difference once nothing is pending or in flight (2 is
         also every command's exit status on a usage error)
      3  the set-up was changed by someone else: the consumer (its filter,
         headers only, ...), which may deliver nothing while its numbers look
         healthy, or EVIDENCE (deleted and created again under the recorded
         assessments), whose new evidence a worker would skip
    """  # noqa: D301 - \b keeps click from rewrapping the table
    name = projection or app.settings.projection
    result = run(_status(app, name))
    if as_json:
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        _print_status(name, result)
    if result.consumer_changed or result.evidence_replaced:
        sys.exit(3)
    if result.unaccounted:
        sys.exit(2)


async def _status(app: AppContext, name: str) -> PipelineStatus:
    async with await connect_provisioned(app.settings, name="riskpipe-status") as store:
        return await pipeline_status(store, name)


def _print_status(name: str, s: PipelineStatus) -> None:
    table = Table(title="streams")
    table.add_column("stream")
    table.add_column("messages", justify="right")
    for stream, count in s.streams.items():
        table.add_row(stream, str(count))
    out_console().print(table)
    _print_setup(name, s)
    _print_leases(s.leases)
    for stream, seqs in sorted(s.foreign.items()):
        shown = ", ".join(map(str, seqs[:_SHOWN])) + (", ..." if len(seqs) > _SHOWN else "")
        click.echo(f"foreign on {stream}: {len(seqs)} (sequences {shown}), not counted")
    click.echo(f"dlq: depth={s.dlq_depth} replayed={s.dlq_replayed} purged={s.dlq_purged}")
    verdict = "OK" if s.balanced else "DOES NOT ADD UP"
    click.echo(
        f"accounting: evidence={s.evidence} = assessed={s.assessed}"
        f" + dead_lettered={s.dead_lettered} + pending={s.pending}  [{verdict}]"
    )
    if s.risk_repeated:  # foreign messages are listed above
        click.echo(
            f"  not counted as assessed: {s.risk_repeated} repeated assessment(s) of evidence"
            " assessed before"
        )
    if s.unaccounted and s.gap > 0:
        click.echo(f"  GAP: {s.gap} evidence event(s) neither assessed, dead-lettered nor pending")
    elif s.unaccounted:
        click.echo(f"  GAP: {-s.gap} more accounted for than there is evidence, nothing in flight")
    elif not s.balanced:
        click.echo("  (messages are in flight; the numbers settle once they are acknowledged)")


def _print_setup(name: str, s: PipelineStatus) -> None:
    """The consumer, what someone else changed, and the checkpoint."""
    if s.consumer is None:
        click.echo(f"consumer {name}: not created yet (start `riskpipe worker`)")
    else:
        c = s.consumer
        click.echo(
            f"consumer {name}: pending={c['num_pending']} ack_pending={c['num_ack_pending']}"
            f" redelivered={c['num_redelivered']} ack_floor={c['ack_floor']}"
        )
    for key, (found, expected) in sorted(s.consumer_changed.items()):
        click.echo(
            f"  CHANGED BY SOMEONE ELSE: {key} is {found!r}, the worker set {expected!r}"
            " (a worker refuses to run on it; delete the consumer to have it recreated)"
        )
    if s.evidence_replaced is not None:
        click.echo(f"EVIDENCE REPLACED: {s.evidence_replaced}")
    click.echo(f"checkpoint: {s.checkpoint}")
    if s.checkpoint_refused is not None:
        click.echo(f"  REFUSED: {s.checkpoint_refused} (a worker starts without it)")


def _print_leases(leases: LeaseOwnership | None) -> None:
    """Who holds which partitions, when each one's first lease runs out, and what nobody holds."""
    if leases is None:
        click.echo("leases: no lease bucket (run `riskpipe init`)")
        return
    ttl = f"TTL {leases.ttl:g} s" if leases.ttl is not None else "no TTL: run `riskpipe init`"
    if not leases.workers:
        click.echo(
            f"leases ({ttl}): no worker holds a lease (none is running, or only"
            " `--until-idle` runs, which take none)"
        )
        return
    held = sum(len(w.partitions) for w in leases.workers)
    table = Table(title=plain(f"lease owners ({ttl}; {held} of {held + len(leases.unowned)} held)"))
    for column in ("worker", "partitions"):  # never cut short: folded when narrow
        table.add_column(column, overflow="fold")
    table.add_column("held", justify="right")
    table.add_column("expires in", justify="right")
    now = time.time()
    for share in leases.workers:
        table.add_row(
            plain(share.worker + ("" if share.member else " (left or crashed)")),
            _ranges(share.partitions) or "none (a spare)",
            str(len(share.partitions)),
            f"{max(0.0, share.expires_at - now):.1f} s",
        )
    out_console().print(table)
    if leases.unowned:
        running = any(share.member for share in leases.workers)
        click.echo(
            f"unowned: {_ranges(leases.unowned)} (held by no worker; "
            + ("the workers take them at their next round)" if running else "none is running)")
        )


def _ranges(numbers: list[int]) -> str:
    """Sorted partition numbers as runs: ``0-3, 7, 9-11``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


@main.command()
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--entity", required=True, help="Entity id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
def assessments(app: AppContext, tenant: str, entity: str, as_json: bool) -> None:
    """An entity's risk assessments in order, level changes highlighted."""
    rows = run(_assessments(app, tenant, entity))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    table = Table(title=plain(f"assessments for {tenant}/{entity}"))
    add_columns(
        table, "seq", "evidence seq", "pattern/id", "level", "score", "confidence",
        "top contributions",
    )  # fmt: skip
    for row in rows:
        a = row["assessment"]
        changed = a["level"] != a["previous_level"]
        level = f"[bold red]{a['previous_level']} -> {a['level']}[/]" if changed else a["level"]
        top = sorted(a["contributions"].items(), key=lambda kv: -abs(kv[1]))[:3]
        table.add_row(
            str(row["sequence"]), str(row["evidence"]["sequence"]),
            plain(row["evidence"]["id"]), level,
            f"{a['score']:.3f}",
            f"{a['confidence']:.2f}" + (" (degraded)" if a["degraded"] else ""),
            ", ".join(f"{k} {v:.3f}" for k, v in top),
        )  # fmt: skip
    out_console().print(table)
    click.echo(f"{len(rows)} assessment(s)")


async def _assessments(app: AppContext, tenant: str, entity: str) -> list[dict[str, Any]]:
    try:
        async with await connect_provisioned(app.settings, name="riskpipe-assessments") as store:
            return [
                {
                    "sequence": rec.sequence,
                    "time": rec.event.time.isoformat(),
                    **(rec.event.data or {}),
                }
                async for rec in store.read(tenant, entity, category="risk")
                if rec.event is not None
            ]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
