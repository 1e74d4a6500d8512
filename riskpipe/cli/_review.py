"""``riskpipe review``: cases for scripts and terminals, through the review service."""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.table import Table

from analyzers import RiskLevel
from projections.review import Actor, ReviewService, all_cases, load_policy
from projections.review.errors import ReviewError
from riskpipe.cli._app import AppContext, main
from riskpipe.cli._common import (
    add_columns,
    checked_token,
    connect_provisioned,
    out_console,
    plain,
    run,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from projections.review import Case

_STATUSES = ("open", "escalated", "decided", "all")
_OUTCOMES = ("confirmed", "false_positive", "escalated")
_ROLES = ("reviewer", "operator", "auditor", "admin")


def _summary(case: Case, version: int) -> dict[str, Any]:
    opened = case.opened
    decision = case.decision
    return {
        "case": case.key, "tenant": case.tenant, "entity": case.entity, "number": case.number,
        "status": case.status, "assignee": case.assignee, "version": version,
        "opened_at": case.opened_at.isoformat(), "triggers": list(opened.triggers),
        "level": opened.assessment.level.value, "score": opened.assessment.score,
        "confidence": opened.assessment.confidence,
        "assessment": {"stream": opened.assessment.stream, "sequence": opened.assessment.sequence},
        "policy_version": opened.policy_version,
        "decision": None if decision is None else {
            "outcome": decision.outcome, "reason": decision.reason,
            "level": None if decision.level is None else decision.level.value,
            "by": decision.by.model_dump(),
            "at": None if case.decided_at is None else case.decided_at.isoformat(),
        },
    }  # fmt: skip


@main.group()
def review() -> None:
    """Review cases: list, show, assign, comment, decide, reopen (docs/review.md)."""


@review.command("list")
@click.option("--tenant", "tenants", multiple=True, help="Only these tenants (repeatable).")
@click.option("--status", type=click.Choice(_STATUSES), default="open", show_default=True)
@click.option("--level", type=click.Choice([level.value for level in RiskLevel]), default=None)
@click.option("--assignee", default=None, help="Only cases assigned to this reviewer.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def review_list(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenants: tuple[str, ...],
    status: str,
    level: str | None,
    assignee: str | None,
    as_json: bool,
) -> None:
    """Cases, oldest first: each entity's latest case, read from the log."""
    wanted = frozenset(checked_token(t, "tenant") for t in tenants) or None

    async def listed() -> list[tuple[Case, int]]:
        async with await connect_provisioned(app.settings, name="riskpipe-review") as store:
            return [
                (entity.current, entity.version)
                for entity in await all_cases(store, tenants=wanted)
                if entity.current is not None
            ]

    rows = [
        (case, version)
        for case, version in run(listed())
        if status in {"all", case.status}
        and (level is None or case.opened.assessment.level.value == level)
        and (assignee is None or case.assignee == assignee)
    ]
    rows.sort(key=lambda row: row[0].opened_at)
    if as_json:
        for case, version in rows:
            click.echo(json.dumps(_summary(case, version), sort_keys=True))
        return
    table = Table(title=f"cases ({len(rows)})")
    add_columns(table, "case", "status", "level", "score", "triggers", "assignee", "opened")
    for case, _ in rows:
        table.add_row(
            plain(case.key), case.status, case.opened.assessment.level.value,
            f"{case.opened.assessment.score:.3f}", ", ".join(case.opened.triggers),
            plain(case.assignee or "-"), case.opened_at.isoformat(timespec="seconds"),
        )  # fmt: skip
    out_console().print(table)


@review.command("show")
@click.argument("tenant")
@click.argument("entity")
@click.option(
    "--case", "number", type=click.IntRange(min=1), default=None, help="[default: latest]"
)
@click.pass_obj
def review_show(app: AppContext, tenant: str, entity: str, number: int | None) -> None:
    """One case in full (JSON): its state, timeline and the entity's assessments since it opened."""
    tenant, entity = checked_token(tenant, "tenant"), checked_token(entity, "entity")

    async def shown() -> dict[str, Any]:
        async with await connect_provisioned(app.settings, name="riskpipe-review") as store:
            service = ReviewService(store, clock=_now)
            cases = await service.cases(tenant, entity)
            case = await service.case(tenant, entity, number)
            body = _summary(case, cases.version)
            body["timeline"] = [
                {"type": entry.type, "sequence": entry.sequence, "time": entry.time.isoformat(),
                 "data": entry.data.model_dump(mode="json")}
                for entry in case.timeline
            ]  # fmt: skip
            since = case.opened.assessment.sequence
            body["assessments"] = [
                {"sequence": rec.sequence, **_assessment(rec.event.data)}
                async for rec in store.read(tenant, entity, category="risk", from_version=since)
                if rec.event is not None and rec.event.data is not None
            ]
            return body

    click.echo(json.dumps(_guarded(shown), indent=2, sort_keys=True))


def _assessment(data: dict[str, Any]) -> dict[str, Any]:
    assessment = data.get("assessment") or {}
    return {
        key: assessment.get(key)
        for key in ("level", "score", "confidence", "degraded", "contributions", "evidence_id")
    }


_by = click.option("--by", default=None, help="Who acts [default: RISKPIPE_ACTOR or the user].")
_role = click.option("--role", type=click.Choice(_ROLES), default="reviewer", show_default=True)
_case = click.option("--case", "number", type=click.IntRange(min=1), default=None)
_if_version = click.option(
    "--if-version", type=click.IntRange(min=0), default=None,
    help="Act only if the case is still at this version (else exit 1).",
)  # fmt: skip


def _actor(by: str | None, role: str) -> Actor:
    name = by or os.environ.get("RISKPIPE_ACTOR") or getpass.getuser()
    try:
        return Actor.model_validate({"name": name, "role": role})
    except ValidationError as exc:
        raise click.BadParameter(f"{name!r}: use 1 to 128 printable characters, no spaces") from exc


@review.command("decide")
@click.argument("tenant")
@click.argument("entity")
@click.option("--outcome", type=click.Choice(_OUTCOMES), required=True)
@click.option("--reason", required=True, help="Why: recorded with the decision.")
@click.option("--level", type=click.Choice([level.value for level in RiskLevel]), default=None)
@_case
@_if_version
@_by
@_role
@click.pass_obj
def review_decide(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str,
    outcome: str,
    reason: str,
    level: str | None,
    number: int | None,
    if_version: int | None,
    by: str | None,
    role: str,
) -> None:
    """Decide the entity's case: confirmed, false_positive or escalated, with a reason."""
    actor = _actor(by, role)
    decided = RiskLevel(level) if level else None
    _act(
        app, tenant, entity, number,
        lambda s, t, e, n: s.decide(
            t, e, n, outcome, reason, by=actor, level=decided, if_version=if_version  # type: ignore[arg-type]
        ),
    )  # fmt: skip


@review.command("assign")
@click.argument("tenant")
@click.argument("entity")
@click.argument("assignee", required=False)
@_case
@_if_version
@_by
@_role
@click.pass_obj
def review_assign(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str,
    assignee: str | None,
    number: int | None,
    if_version: int | None,
    by: str | None,
    role: str,
) -> None:
    """Give the case to ASSIGNEE (none given: unassign it)."""
    actor = _actor(by, role)
    if assignee is not None:
        _actor(assignee, "reviewer")  # the same rules as a name
    _act(
        app, tenant, entity, number,
        lambda s, t, e, n: s.assign(t, e, n, assignee, by=actor, if_version=if_version),
    )  # fmt: skip


@review.command("comment")
@click.argument("tenant")
@click.argument("entity")
@click.argument("text")
@_case
@_if_version
@_by
@_role
@click.pass_obj
def review_comment(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str,
    text: str,
    number: int | None,
    if_version: int | None,
    by: str | None,
    role: str,
) -> None:
    """Add TEXT to the case's timeline."""
    actor = _actor(by, role)
    _act(
        app, tenant, entity, number,
        lambda s, t, e, n: s.comment(t, e, n, text, by=actor, if_version=if_version),
    )  # fmt: skip


@review.command("reopen")
@click.argument("tenant")
@click.argument("entity")
@click.option("--reason", required=True, help="Why: recorded with the case.")
@_case
@_if_version
@_by
@_role
@click.pass_obj
def review_reopen(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    tenant: str,
    entity: str,
    reason: str,
    number: int | None,
    if_version: int | None,
    by: str | None,
    role: str,
) -> None:
    """Open a decided case again."""
    actor = _actor(by, role)
    _act(
        app, tenant, entity, number,
        lambda s, t, e, n: s.reopen(t, e, n, reason, by=actor, if_version=if_version),
    )  # fmt: skip


@review.command("check-policy")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def review_check_policy(path: Path) -> None:
    """Validate a review policy file; print it with its defaults filled in."""
    try:
        policy = load_policy(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(policy.model_dump(mode="json"), indent=2, sort_keys=True))


def _act(
    app: AppContext,
    tenant: str,
    entity: str,
    number: int | None,
    action: Callable[[ReviewService, str, str, int], Awaitable[tuple[Case, int]]],
) -> None:
    """Run one action on case ``number`` (default: the latest) and print the case after it."""
    tenant, entity = checked_token(tenant, "tenant"), checked_token(entity, "entity")

    async def acted() -> dict[str, Any]:
        async with await connect_provisioned(app.settings, name="riskpipe-review") as store:
            service = ReviewService(store, clock=_now)
            which = number or (await service.case(tenant, entity)).number
            case, version = await action(service, tenant, entity, which)
            return _summary(case, version)

    click.echo(json.dumps(_guarded(acted), sort_keys=True))


def _guarded(action: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """The action's result; a review error or an invalid value is a clear message and exit 1."""
    try:
        return run(action())
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise click.ClickException(problems) from exc


def _now() -> datetime:
    return datetime.now(UTC)
