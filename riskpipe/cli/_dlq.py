"""``riskpipe dlq``: inspect, replay and purge dead letters."""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import click
from rich.table import Table

from eventstore import validate_token
from projections import (
    DeadLetter,
    DeadLetterQueue,
    NotADeadLetterError,
    OriginalUnavailableError,
    ReplayRefusedError,
)
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import add_columns, connect_provisioned, out_console, plain, run


def _actor() -> str:
    return os.environ.get("RISKPIPE_ACTOR") or getpass.getuser()


def _summary(letter: DeadLetter) -> dict[str, Any]:
    d = letter.data
    return {
        "dlq_sequence": letter.sequence, "status": letter.status, "replayed_as": letter.replayed_as,
        "tenant": letter.tenant, "entity": letter.entity,
        "stream": d.stream, "sequence": d.sequence,
        "evidence_id": d.evidence_id, "error_type": d.error_type, "error": d.error_message,
        "permanent": d.permanent, "delivery_count": d.delivery_count,
        "dead_lettered_at": d.dead_lettered_at.isoformat(),
    }  # fmt: skip


@main.group()
@click.option("--projection", default=None, help="Projection name [default: risk].")
@click.pass_context
def dlq(ctx: click.Context, projection: str | None) -> None:
    """Dead letters: list, show, replay into the projection, purge."""
    app: AppContext = ctx.obj
    name = projection or app.settings.projection
    try:
        ctx.meta["projection"] = validate_token(name, what="projection")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--projection") from exc


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool) -> None:
    """Every dead letter still in the queue, oldest first."""
    letters = run(_with_dlq(ctx, lambda q: q.list()))
    if as_json:
        for letter in letters:
            click.echo(json.dumps(_summary(letter), sort_keys=True))
        return
    table = Table(title=f"dead letters ({len(letters)})")
    add_columns(
        table, "dlq seq", "status", "tenant/entity", "evidence seq", "evidence id", "error",
        "deliveries",
    )  # fmt: skip
    for letter in letters:
        d = letter.data
        table.add_row(
            str(letter.sequence), letter.status,
            plain(f"{letter.tenant}/{letter.entity}"), str(d.sequence),
            plain(d.evidence_id or "-"), plain(f"{d.error_type}: {d.error_message[:80]}"),
            str(d.delivery_count),
        )  # fmt: skip
    out_console().print(table)


@dlq.command("show")
@click.argument("seq", type=click.IntRange(min=1))
@click.pass_context
def dlq_show(ctx: click.Context, seq: int) -> None:
    """One dead letter in full, with its original bytes."""
    letter = run(_with_dlq(ctx, lambda q: q.get(seq)))
    body = {**_summary(letter), "original": letter.data.original_bytes().decode("utf-8", "replace")}
    body["original_headers"] = letter.data.original_headers
    block = letter.data.header_block()
    body["original_header_block"] = None if block is None else block.decode("utf-8", "replace")
    body["payload_sha256"] = letter.data.payload_sha256
    body["trace_id"] = letter.data.trace_id
    body["original_size"] = letter.data.original_size
    body["original_truncated"] = letter.data.original_truncated
    body["envelope"] = letter.data.envelope
    click.echo(json.dumps(body, indent=2, sort_keys=True))


@dlq.command("replay")
@click.argument("seq", type=click.IntRange(min=1), required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every pending dead letter.")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_context
def dlq_replay(ctx: click.Context, seq: int | None, replay_all: bool, reason: str) -> None:
    """Send dead letters back through the projection (recorded on the audit stream).

    A dead letter is replayed once: asking again, however much later, is
    refused (exit 1) with when, by whom and as which evidence it was replayed.
    """
    targets = _targets(ctx, seq, replay_all, pending_only=True)
    refused = 0
    for target in targets:
        try:
            new_seq = run(
                _with_dlq(ctx, lambda q, t=target: q.replay(t, actor=_actor(), reason=reason))
            )
        except ReplayRefusedError as exc:
            refused += 1
            click.echo(f"Error: {exc}", err=True)
            continue
        click.echo(f"replayed dead letter {target} as evidence sequence {new_seq}")
    click.echo(f"{len(targets) - refused} replayed" + (f", {refused} refused" if refused else ""))
    if refused:
        ctx.exit(1)


@dlq.command("purge")
@click.argument("seq", type=click.IntRange(min=1), required=False)
@click.option("--all", "purge_all", is_flag=True, help="Purge every dead letter.")
@click.option("--yes", is_flag=True, help="Confirm purging with --all.")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.pass_context
def dlq_purge(ctx: click.Context, seq: int | None, purge_all: bool, yes: bool, reason: str) -> None:
    """Delete dead letters from the queue (recorded on the audit stream)."""
    if purge_all and not yes:
        raise click.UsageError("purging every dead letter needs --yes")
    targets = _targets(ctx, seq, purge_all, pending_only=False)
    for target in targets:
        run(_with_dlq(ctx, lambda q, t=target: q.purge(t, actor=_actor(), reason=reason)))
        click.echo(f"purged dead letter {target}")
    click.echo(f"{len(targets)} purged")


def _targets(ctx: click.Context, seq: int | None, every: bool, *, pending_only: bool) -> list[int]:
    if (seq is None) == (not every):
        raise click.UsageError("give either a DLQ sequence or --all")
    if seq is not None:
        return [seq]
    letters = run(_with_dlq(ctx, lambda q: q.list()))
    return [x.sequence for x in letters if not pending_only or x.status == "pending"]


async def _with_dlq(ctx: click.Context, action: Any) -> Any:  # noqa: ANN401 - the action's result
    app: AppContext = ctx.find_object(AppContext)  # type: ignore[assignment]
    async with await connect_provisioned(app.settings, name="riskpipe-dlq") as store:
        try:
            return await action(DeadLetterQueue(store, ctx.meta["projection"]))
        except (NotADeadLetterError, OriginalUnavailableError) as exc:
            raise click.ClickException(str(exc)) from exc
