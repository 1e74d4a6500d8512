"""The review pages: the queue, a case, an entity's timeline, and the audit of one entity.

Each page calls the same Python the API's routes are (``riskpipe.api._cases``),
with the session's principal: the same tenant checks, the same fences on a
case's version, the same events written. A case, entity or tenant the
session does not see is a 404 page, as the API answers 404.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from analyzers import AnalyzerConfig
from eventstore import validate_token
from projections.audit import ReplayScope, explain, replay
from projections.review import DECIDED, CaseDecidedData, read_cases
from riskpipe.api import _cases as api
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import Permission
from riskpipe.console._chart import chart, contribution_bars
from riskpipe.console._web import (
    PREFIX,
    PageError,
    api_context,
    form,
    render,
    see_other,
    session_of,
    state_of,
)

if TYPE_CHECKING:
    from projections.audit import Explanation
    from riskpipe.api._tokens import Principal

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LEVELS = ("critical", "high", "medium", "low")
STATUSES = {"waiting": "open or escalated", "open": "open", "escalated": "escalated",
            "decided": "decided", "any": "any"}  # fmt: skip
AGES = {"": "any age", "1h": "older than 1 hour", "1d": "older than 1 day",
        "7d": "older than 7 days"}  # fmt: skip
_AGE = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
_EVIDENCE_SHOWN = 200
_NOT_FOUND = "no such case, or not one of your tenants'"


def _token(value: str) -> bool:
    try:
        validate_token(value, what="id")
    except ValueError:
        return False
    return True


def _page_error(exc: ProblemError) -> PageError:
    return PageError(exc.status, exc.detail)


@router.get("/queue")
async def queue(  # noqa: PLR0913 - the filters, each a query parameter
    request: Request,
    *,
    tenant: str = "",
    level: str = "",
    status: str = "waiting",
    assignee: str = "",
    age: str = "",
) -> Response:
    """Cases waiting for a decision (by default), oldest first, with counts by level."""
    session = session_of(request, Permission.CASES_READ)
    ctx = api_context(request)
    status = status if status in STATUSES else "waiting"
    before = None
    if age in _AGE:
        before = (datetime.now(UTC) - _AGE[age]).isoformat(timespec="seconds")
    wanted = ["open", "escalated"] if status == "waiting" else [status]
    items: list[api.CaseListItem] = []
    try:
        for one in wanted:
            page = await api.list_cases(
                principal=session.principal, ctx=ctx,
                tenant=tenant if _token(tenant) else None,
                status=None if one == "any" else one,  # type: ignore[arg-type]
                assignee=assignee.strip() or None, opened_before=before, limit=api.MAX_PAGE,
            )  # fmt: skip
            items += page.items
    except ProblemError as exc:
        raise _page_error(exc) from None
    items.sort(key=lambda item: (item.opened_at, item.case))
    counts = Counter(item.level.value for item in items)
    shown = [item for item in items if not level or item.level.value == level]
    return render(
        request, "queue.html", title="Review queue", items=shown,
        counts=[(lv, counts.get(lv, 0)) for lv in LEVELS], total=len(items),
        filters={"tenant": tenant, "level": level, "status": status, "assignee": assignee,
                 "age": age},
        levels=LEVELS, statuses=STATUSES, ages=AGES,
        tenants=sorted(session.principal.tenants or ()),
    )  # fmt: skip


async def _history(request: Request, tenant: str, entity: str) -> Explanation:
    return await explain(api_context(request).store, tenant, entity,
                         projection=api_context(request).projection)  # fmt: skip


async def _picture(request: Request, tenant: str, entity: str) -> dict[str, Any]:
    """The entity's chart, evidence list, cases and latest recommendations."""
    history = await _history(request, tenant, entity)
    cases = await read_cases(api_context(request).store, tenant, entity)
    points, marks = [], []
    stored = [entry.stored_at for entry in history.timeline]
    for x, entry in enumerate(history.timeline):
        marks.append((float(x), f"evidence {entry.sequence} ({entry.outcome})"))
        if entry.assessment is not None:
            a = entry.assessment.data.assessment
            label = f"evidence {entry.sequence}: score {a.score:.3f} ({a.level.value})"
            points.append((float(x), a.score, a.level.value, label))
    decisions = [
        (bisect_right(stored, item.time) - 0.5,
         f"case {c.number} {item.data.outcome} by {item.data.by.name}")
        for c in cases.cases
        for item in c.timeline
        if item.type == DECIDED and isinstance(item.data, CaseDecidedData)
    ]  # fmt: skip
    times = stored + [item.time for c in cases.cases for item in c.timeline]
    span = (min(times, default=None), max(times, default=None))
    current = history.current
    latest = current.data.assessment if current is not None else None
    thresholds = state_of(request).thresholds
    return {
        "chart": chart(points, marks, decisions, thresholds, span),
        "evidence": list(reversed(history.timeline))[:_EVIDENCE_SHOWN],
        "evidence_total": len(history.timeline),
        "cases": list(reversed(cases.cases)),
        "latest": latest,
        "recommendations": list(latest.recommendations) if latest else [],
    }


@router.get("/cases/{tenant}/{entity}/{number}")
async def case_page(
    request: Request, tenant: str, entity: str, number: str, done: str = ""
) -> Response:
    """One case: the chart, its contributions, evidence, recommendations and the actions."""
    session = session_of(request, Permission.CASES_READ)
    return await _case_response(request, session.principal, tenant, entity, number, done=done)


async def _case_response(  # noqa: PLR0913 - the case, and what to say about it
    request: Request,
    principal: Principal,
    tenant: str,
    entity: str,
    number: str,
    *,
    status: int = 200,
    conflict: str = "",
    error: str = "",
    done: str = "",
) -> Response:
    if not (_token(tenant) and _token(entity) and number.isdecimal() and 0 < int(number) < 10**6):
        raise PageError(404, _NOT_FOUND)
    try:
        detail = await api.show_case(
            tenant=tenant, entity=entity, number=int(number), principal=principal,
            ctx=api_context(request), response=Response(),
        )  # fmt: skip
    except ProblemError as exc:
        raise (
            PageError(404, _NOT_FOUND) if exc.status == HTTPStatus.NOT_FOUND else _page_error(exc)
        ) from None
    picture = await _picture(request, tenant, entity)
    return render(
        request, "case.html", status=status, title=f"Case {detail.case}", case=detail,
        bars=contribution_bars(detail.contributions), conflict=conflict, error=error,
        done=done if done in {"decided", "assigned", "commented"} else "",
        writer=principal.may(Permission.CASES_WRITE), **picture,
    )  # fmt: skip


@router.post("/cases/{tenant}/{entity}/{number}/{action}")
async def case_action(
    request: Request, tenant: str, entity: str, number: str, action: str
) -> Response:
    """Assign, comment or decide, fenced on the version the form was shown with."""
    session = session_of(request, Permission.CASES_WRITE)
    fields = await form(request, session)
    if action not in {"assign", "comment", "decide"} or not number.isdecimal():
        raise PageError(404, "no such action")
    if not (_token(tenant) and _token(entity)) or not session.principal.sees(tenant):
        raise PageError(404, _NOT_FOUND)
    version = fields.get("version", "")
    common: dict[str, Any] = {
        "tenant": tenant, "entity": entity, "number": int(number),
        "principal": session.principal, "ctx": api_context(request), "response": Response(),
    }  # fmt: skip
    try:
        if action == "decide":
            body = api.DecideRequest(
                outcome=fields.get("outcome", ""),
                reason=fields.get("reason", ""),
                level=fields.get("level") or None,
            )
            await api.decide_case(**common, body=body, if_match=version)
        elif action == "assign":
            assignee = fields.get("assignee", "").strip() or None
            await api.assign_case(
                **common, body=api.AssignRequest(assignee=assignee), if_match=version
            )
        else:
            await api.comment_case(
                **common, body=api.CommentRequest(text=fields.get("text", "")), if_match=version
            )
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        message = "a reason is required" if action == "decide" and "reason" in why else why
        return await _case_response(request, session.principal, tenant, entity, number,
                                    status=422, error=message)  # fmt: skip
    except ProblemError as exc:
        if exc.status in {409, 412}:
            return await _case_response(request, session.principal, tenant, entity, number,
                                        status=409, conflict=exc.detail)  # fmt: skip
        if exc.status == HTTPStatus.NOT_FOUND:
            raise PageError(404, _NOT_FOUND) from None
        raise _page_error(exc) from None
    done = {"decide": "decided", "assign": "assigned", "comment": "commented"}[action]
    return see_other(f"{PREFIX}/cases/{tenant}/{entity}/{number}?done={done}")


@router.get("/entities")
async def entity_search(request: Request, tenant: str = "", entity: str = "") -> Response:
    """Find an entity by tenant and id; a found one's timeline is the next page."""
    session = session_of(request, Permission.CASES_READ)
    error = ""
    if tenant or entity:
        if _token(tenant) and _token(entity):
            return see_other(f"{PREFIX}/entities/{tenant}/{entity}")
        error = "A tenant and an entity id are both needed (letters, digits, - _ : @ ...)."
    return render(request, "entities.html", title="Entity search", tenant=tenant, entity=entity,
                  error=error, tenants=sorted(session.principal.tenants or ()))  # fmt: skip


@router.get("/entities/{tenant}/{entity}")
async def entity_page(request: Request, tenant: str, entity: str) -> Response:
    """An entity's score over time, its cases (if any) and its evidence."""
    session = session_of(request, Permission.CASES_READ)
    if not (_token(tenant) and _token(entity)) or not session.principal.sees(tenant):
        raise PageError(404, "no such entity, or not one of your tenants'")
    picture = await _picture(request, tenant, entity)
    if not picture["evidence"] and not picture["cases"]:
        raise PageError(404, "no such entity, or not one of your tenants'")
    return render(request, "entity.html", title=f"Entity {tenant}/{entity}", tenant=tenant,
                  entity=entity, **picture)  # fmt: skip


@router.get("/audit")
async def audit_page(request: Request, tenant: str = "", entity: str = "") -> Response:
    """Verify one entity's history: replay its evidence and compare every assessment."""
    session = session_of(request, Permission.CASES_READ)
    report = None
    error = ""
    if tenant or entity:
        if not (_token(tenant) and _token(entity)) or not session.principal.sees(tenant):
            error = "No such entity among your tenants."
        else:
            ctx = api_context(request)
            report = await replay(
                ctx.store, scope=ReplayScope(tenant, entity), config=AnalyzerConfig(),
                projection=ctx.projection, jobs=1,
            )  # fmt: skip
            if report.totals.evidence == 0:
                report, error = None, "No such entity among your tenants."
    return render(request, "audit.html", title="Audit", tenant=tenant, entity=entity,
                  report=report, error=error)  # fmt: skip
