"""The review pages: the queue, a case, an entity's timeline, and the audit of one entity.

Each page calls the same Python the API's routes are (``riskpipe.api._cases``),
with the session's principal: the same tenant checks, the same fences on a
case's version, the same events written. A case, entity or tenant the
session does not see is a 404 page, as the API answers 404.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from analyzers import AnalyzerConfig
from eventstore import validate_token
from projections.audit import ReplayScope, explain, replay
from projections.readmodel import (
    CasePage,
    CaseStatus,
    InvalidCursorError,
    NoGenerationError,
    ReadModelError,
)
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
_WANTED: dict[str, list[CaseStatus] | None] = {
    "waiting": ["open", "escalated"], "open": ["open"], "escalated": ["escalated"],
    "decided": ["decided"], "any": None,
}  # fmt: skip
_AGE = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7)}
_EVIDENCE_SHOWN = 200
_QUEUE_PAGE = 100
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
    cursor: str = "",
) -> Response:
    """Cases waiting for a decision (by default), oldest first, a page at a time, counts by level.

    The counts are of every case the filters other than the level match,
    not only of the page shown.
    """
    session = session_of(request, Permission.CASES_READ)
    reader = api_context(request).reader
    if reader is None:
        raise PageError(503, "the queue needs the SQL read model; see docs/readmodel.md")
    status = status if status in STATUSES else "waiting"
    level = level if level in LEVELS else ""
    principal = session.principal
    tenants: frozenset[str] | None = principal.tenants
    if _token(tenant):
        tenants = frozenset({tenant}) if principal.sees(tenant) else frozenset()
    wanted = _WANTED[status]
    filters: dict[str, Any] = {
        "tenants": tenants, "status": wanted, "assignee": assignee.strip() or None,
        "older_than": _AGE.get(age),
    }  # fmt: skip
    try:
        page = await reader.list_cases(
            **filters, level=level or None, limit=_QUEUE_PAGE, cursor=cursor or None
        )
        counts = await reader.count_cases(**filters)
    except InvalidCursorError:
        raise PageError(400, "that page of the queue is not one this console gave") from None
    except NoGenerationError:
        page, counts = CasePage(items=(), next_cursor=None), {}
    except ReadModelError as exc:
        raise PageError(503, f"the read model cannot answer: {exc}") from None
    chosen = {"tenant": tenant, "level": level, "status": status, "assignee": assignee, "age": age}
    return render(
        request, "queue.html", title="Review queue",
        items=[api.CaseListItem.of(view) for view in page.items],
        counts=[(lv, counts.get(lv, 0)) for lv in LEVELS], total=sum(counts.values()),
        matching=counts.get(level, 0) if level else sum(counts.values()),
        paged=bool(cursor or page.next_cursor),
        next_page=f"{PREFIX}/queue?{urlencode({**chosen, 'cursor': page.next_cursor})}"
        if page.next_cursor else "",
        filters=chosen, levels=LEVELS, statuses=STATUSES, ages=AGES,
        tenants=sorted(principal.tenants or ()),
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
    typed: dict[str, str] | None = None,
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
        writer=principal.may(Permission.CASES_WRITE), typed=typed or {}, **picture,
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
    # what the person typed comes back in the form when nothing was written
    typed = {f"{action}.{k}": v[:4000] for k, v in fields.items() if k not in {"csrf", "version"}}
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
                                    status=422, error=message, typed=typed)  # fmt: skip
    except ProblemError as exc:
        if exc.status in {409, 412}:
            return await _case_response(request, session.principal, tenant, entity, number,
                                        status=409, conflict=exc.detail, typed=typed)  # fmt: skip
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
