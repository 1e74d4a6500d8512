"""``/api/cases``: list, show, assign, comment, decide and reopen, within the token's tenants.

Every change goes through :class:`projections.review.ReviewService`, as
``riskpipe review`` does, so each is one event on the entity's review
subject, fenced on the case's version, with the token's name and role as
who did it. A case shows its version as its ``ETag``; ``decide`` and
``reopen`` need it back as ``If-Match`` (a required header: 422 without it;
412 when it is no longer current), ``assign`` and ``comment`` take it
optionally. Of two
decisions sent with the same version, exactly one is stored; the other gets
412 (or 409 when both passed the check at the same moment).

A case of a tenant the token does not see is answered exactly as a case
that does not exist: 404 with the same detail.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from analyzers import RiskLevel
from eventstore import RFC3339, SUBJECT_TOKEN, validate_token
from projections.readmodel import CaseView, NoGenerationError, ReadModelError
from projections.review import ReviewService
from projections.review.errors import (
    CaseConflictError,
    CaseNotFoundError,
    CaseStateError,
    StaleCaseError,
)
from riskpipe.api._auth import Context, require
from riskpipe.api._openapi import API_PREFIX, problems
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import Permission
from riskpipe.api._tokens import Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventstore import EventStore
    from projections.review import Case

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/cases", tags=["cases"])

MAX_PAGE = 500
DEFAULT_PAGE = 100
_TOKEN_ID = SUBJECT_TOKEN
TenantId = Annotated[str, Path(pattern=_TOKEN_ID, description="The tenant's id.")]
EntityId = Annotated[str, Path(pattern=_TOKEN_ID, description="The entity's id.")]
Number = Annotated[int, Path(ge=1, le=1_000_000, description="The case's number (from 1).")]
Reader = Annotated[Principal, Depends(require(Permission.CASES_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CASES_WRITE))]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=r"\S")
]
Name = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
IfMatch = Annotated[
    str,
    Header(
        pattern=r'^((W/)?"?[0-9]{1,19}"?)?$',
        description="The case's `ETag` as last read: act only if it is still current.",
    ),
]
FencedIfMatch = Annotated[
    str,
    Header(
        pattern=r'^(W/)?"?[0-9]{1,19}"?$',
        description="The case's `ETag` as last read (required): act only if it is still current.",
    ),
]
Status = Literal["open", "escalated", "decided"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = (datetime(9999, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_TIME = "An RFC 3339 time with its offset, e.g. `2026-12-01T00:00:00Z`."


class CaseSummary(BaseModel):
    """A case in a list: whose, how it stands, and the assessment that opened it."""

    case: str
    """``<tenant>.<entity>.<number>``."""
    tenant: str
    entity: str
    number: int
    status: Status
    assignee: str | None
    version: int
    """The case's version: send it back as ``If-Match`` to act on this state only."""
    opened_at: datetime
    triggers: list[str]
    level: RiskLevel
    score: float
    confidence: float
    assessment_sequence: int
    policy_version: str
    outcome: str | None
    decided_level: RiskLevel | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None

    @classmethod
    def of(cls, case: Case, version: int) -> CaseSummary:
        """The summary of ``case`` at ``version``."""
        ref, decision = case.opened.assessment, case.decision
        return cls(
            case=case.key, tenant=case.tenant, entity=case.entity, number=case.number,
            status=case.status, assignee=case.assignee, version=version,
            opened_at=case.opened_at, triggers=list(case.opened.triggers), level=ref.level,
            score=ref.score, confidence=ref.confidence, assessment_sequence=ref.sequence,
            policy_version=case.opened.policy_version,
            outcome=decision.outcome if decision else None,
            decided_level=decision.level if decision else None,
            decided_by=f"{decision.by.name} ({decision.by.role})" if decision else None,
            decided_at=case.decided_at, reason=decision.reason if decision else None,
        )  # fmt: skip


class TimelineItem(BaseModel):
    """One event of the case's timeline: a review event, or an assessment of the entity."""

    kind: Literal["review", "assessment"]
    type: str
    sequence: int
    """Its sequence in its stream (REVIEW or RISK)."""
    time: datetime
    data: dict[str, Any]


class CaseDetail(CaseSummary):
    """A case in full: its timeline, and the latest assessment's contributions."""

    timeline: list[TimelineItem]
    contributions: dict[str, float]
    """What the entity's latest assessment is made of (what ``riskpipe explain`` shows)."""
    latest_level: RiskLevel | None
    latest_score: float | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignRequest(_Body):
    """Who takes the case (``null``: nobody)."""

    assignee: Name | None


class CommentRequest(_Body):
    """A note for the case's timeline."""

    text: Text


class DecideRequest(_Body):
    """The decision: an outcome, why, and optionally the level it holds the entity at."""

    outcome: Literal["confirmed", "false_positive", "escalated"]
    reason: Text
    level: RiskLevel | None = None


class ReopenRequest(_Body):
    """Why the decided case is opened again."""

    reason: Text


def _not_found(tenant: str, entity: str, number: int | None = None) -> ProblemError:
    return ProblemError(404, str(CaseNotFoundError(tenant, entity, number)))


def _cursor(view: CaseView) -> str:
    """Where a page ended: when its last case opened (µs since the epoch), and its key."""
    micros = (view.opened_at - _EPOCH) // timedelta(microseconds=1)
    key = f"{view.tenant}.{view.entity}.{view.number}".encode()
    return f"{micros}-{base64.urlsafe_b64encode(key).decode().rstrip('=')}"


def _after(cursor: str) -> tuple[datetime, str, str, int]:
    """The position a cursor names: any cursor of the documented shape is one.

    A key that does not decode is read as the smallest key of that moment, so a
    made-up cursor pages from there rather than failing.
    """
    micros, _, encoded = cursor.partition("-")
    when = _EPOCH + timedelta(microseconds=min(int(micros), _MAX_MICROS))
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        tenant, entity, number = key.split(".")
        return when, tenant, entity, int(number)
    except ValueError:
        return when, "", "", 0


class CaseListItem(BaseModel):
    """A case in a list, as the read model holds it."""

    case: str
    """``<tenant>.<entity>.<number>``."""
    tenant: str
    entity: str
    number: int
    status: Status
    assignee: str | None
    version: int
    opened_at: datetime
    triggers: list[str]
    level: RiskLevel
    """The level of the assessment the case was opened on."""
    score: float
    confidence: float
    outcome: str | None
    decided_level: RiskLevel | None
    decided_at: datetime | None

    @classmethod
    def of(cls, view: CaseView) -> CaseListItem:
        """The list item of a read-model row."""
        return cls(
            case=f"{view.tenant}.{view.entity}.{view.number}", tenant=view.tenant,
            entity=view.entity, number=view.number, status=view.status, assignee=view.assignee,
            version=view.version, opened_at=view.opened_at, triggers=list(view.triggers),
            level=RiskLevel(view.level), score=view.score, confidence=view.confidence,
            outcome=view.outcome,
            decided_level=RiskLevel(view.decided_level) if view.decided_level else None,
            decided_at=view.decided_at,
        )  # fmt: skip


class CaseListPage(BaseModel):
    """A page of cases, oldest first."""

    items: list[CaseListItem]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""


@router.get("", responses=problems(403, 422, 503))
async def list_cases(  # noqa: PLR0913 - the filters, each a query parameter
    *,
    principal: Reader,
    ctx: Context,
    tenant: Annotated[str | None, Query(pattern=_TOKEN_ID)] = None,
    status: Status | None = None,
    level: RiskLevel | None = None,
    assignee: Annotated[str | None, Query(pattern=r"^[\x21-\x7e]{1,128}$")] = None,
    opened_before: Annotated[str | None, Query(pattern=RFC3339, description=_TIME)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{1,19}-[A-Za-z0-9_-]{0,700}$",
            description="`next_cursor` of the last page.",
        ),
    ] = None,
) -> CaseListPage:
    """Cases of the token's tenants, oldest first, from the SQL read model.

    Every case, decided ones too (filter with ``status``). The read model
    follows the log within about a second; a case's own page reads the log.
    """
    if ctx.reader is None:
        raise ProblemError(503, "the case list needs the SQL read model; see docs/readmodel.md")
    if tenant is not None and not principal.sees(tenant):
        return CaseListPage(items=[], next_cursor=None)  # nothing of it, not even that it exists
    tenants = frozenset({tenant}) if tenant is not None else principal.tenants
    try:
        page = await ctx.reader.list_cases(
            tenants=tenants,
            status=status,
            level=None if level is None else level.value,
            assignee=assignee,
            older_than=_instant(opened_before),
            after=_after(cursor) if cursor is not None else None,
            limit=limit,
        )
    except NoGenerationError:
        return CaseListPage(items=[], next_cursor=None)  # nothing built yet: no case known
    except ReadModelError as exc:
        raise ProblemError(503, f"the read model cannot answer: {exc}") from None
    items = [CaseListItem.of(view) for view in page.items]
    more = page.next_cursor is not None and items
    return CaseListPage(items=items, next_cursor=_cursor(page.items[-1]) if more else None)


def _instant(text: str | None) -> datetime | None:
    """An RFC 3339 time from a query parameter (its pattern checked already)."""
    return None if text is None else datetime.fromisoformat(text)


@router.get("/{tenant}/{entity}", responses=problems(403, 404, 422, 503))
async def show_latest_case(
    *, tenant: TenantId, entity: EntityId, principal: Reader, ctx: Context, response: Response
) -> CaseDetail:
    """The entity's latest case in full."""
    return await _detail(
        store=ctx.store,
        principal=principal,
        tenant=tenant,
        entity=entity,
        number=None,
        response=response,
    )


@router.get("/{tenant}/{entity}/{number}", responses=problems(403, 404, 422, 503))
async def show_case(  # noqa: PLR0913 - the case's address and the request's context
    *,
    tenant: TenantId,
    entity: EntityId,
    number: Number,
    principal: Reader,
    ctx: Context,
    response: Response,
) -> CaseDetail:
    """One case in full, its version as the ``ETag``.

    Its timeline holds the review events and the entity's assessments since
    it opened; ``contributions`` are the latest assessment's.
    """
    return await _detail(
        store=ctx.store,
        principal=principal,
        tenant=tenant,
        entity=entity,
        number=number,
        response=response,
    )


async def _detail(  # noqa: PLR0913 - the case's address and what to answer with
    *,
    store: EventStore,
    principal: Principal,
    tenant: str,
    entity: str,
    number: int | None,
    response: Response,
) -> CaseDetail:
    if not principal.sees(tenant):
        raise _not_found(tenant, entity, number)
    service = ReviewService(store, clock=_now)
    cases = await service.cases(tenant, entity)
    case = cases.current if number is None else cases.case(number)
    if case is None:
        raise _not_found(tenant, entity, number)
    timeline = [
        TimelineItem(
            kind="review", type=entry.type, sequence=entry.sequence, time=entry.time,
            data=entry.data.model_dump(mode="json"),
        )
        for entry in case.timeline
    ]  # fmt: skip
    latest: dict[str, Any] | None = None
    since = case.opened.assessment.sequence
    async for rec in store.read(tenant, entity, category="risk", from_version=since):
        if rec.event is None or rec.event.data is None:
            continue
        assessment = rec.event.data.get("assessment")
        if not isinstance(assessment, dict):
            continue
        latest = assessment
        timeline.append(
            TimelineItem(
                kind="assessment", type=rec.event.type, sequence=rec.sequence,
                time=rec.event.time, data=_assessment_item(assessment),
            )
        )  # fmt: skip
    timeline.sort(key=lambda item: item.time)
    response.headers["ETag"] = f'"{cases.version}"'
    summary = CaseSummary.of(case, cases.version).model_dump()
    contributions = latest.get("contributions") if latest else None
    return CaseDetail(
        **summary,
        timeline=timeline,
        contributions=contributions if isinstance(contributions, dict) else {},
        latest_level=latest.get("level") if latest else None,
        latest_score=latest.get("score") if latest else None,
    )


def _assessment_item(assessment: dict[str, Any]) -> dict[str, Any]:
    keys = ("level", "score", "confidence", "degraded", "evidence_id", "contributions", "review")
    return {key: assessment.get(key) for key in keys if key in assessment}


def _version(if_match: str, *, required: bool) -> int | None:
    """The version ``If-Match`` names (``"7"``, ``W/"7"`` or ``7``; empty: none).

    Raises:
        ProblemError: 428 when required and missing; 412 when it names no version.
    """
    if not if_match:
        if required:
            raise ProblemError(
                428, "send the case's ETag as If-Match: a decision must name the state it decides"
            )
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdecimal() or len(value) > 19:  # noqa: PLR2004 - digits of a 63-bit sequence
        raise ProblemError(412, f"If-Match {if_match!r} is not a version this API gave")
    return int(value)


async def _act(  # noqa: PLR0913 - the case, who acts, at which version, and the action
    *,
    ctx: Context,
    principal: Principal,
    tenant: str,
    entity: str,
    number: int,
    response: Response,
    action: Callable[[ReviewService], Awaitable[tuple[Case, int]]],
) -> CaseSummary:
    """Run one action on a case the token sees; the case after it, its ETag set.

    Raises:
        ProblemError: 404 (no such case, or not the token's tenant's), 409
            (it does not fit the case's state, or someone acted at the same
            moment), 412 (the case moved on since the version given).
    """
    if not principal.sees(tenant):
        raise _not_found(tenant, entity, number)
    try:
        validate_token(tenant, what="tenant")
        validate_token(entity, what="entity")
    except ValueError:
        raise _not_found(tenant, entity, number) from None
    service = ReviewService(ctx.store, clock=_now)
    try:
        case, version = await action(service)
    except CaseNotFoundError:
        raise _not_found(tenant, entity, number) from None
    except CaseConflictError as exc:
        raise ProblemError(
            409, str(exc), type_="urn:riskpipe:problem:case-conflict", version=exc.current
        ) from None
    except StaleCaseError as exc:
        raise ProblemError(
            412, str(exc), type_="urn:riskpipe:problem:stale-case", version=exc.current
        ) from None
    except CaseStateError as exc:
        raise ProblemError(
            409, str(exc), type_="urn:riskpipe:problem:case-state", status_of_case=exc.status
        ) from None
    response.headers["ETag"] = f'"{version}"'
    return CaseSummary.of(case, version)


_WRITES = problems(403, 404, 409, 412, 422, 503)


@router.post("/{tenant}/{entity}/{number}/assign", responses=_WRITES)
async def assign_case(  # noqa: PLR0913 - the case, the body, and the request's context
    *,
    tenant: TenantId,
    entity: EntityId,
    number: Number,
    body: AssignRequest,
    principal: Writer,
    ctx: Context,
    response: Response,
    if_match: IfMatch = "",
) -> CaseSummary:
    """Give the case to a reviewer (``null``: to nobody)."""
    version = _version(if_match, required=False)
    by = principal.review_actor()
    return await _act(
        ctx=ctx, principal=principal, tenant=tenant, entity=entity, number=number,
        response=response,
        action=lambda s: s.assign(tenant, entity, number, body.assignee, by=by, if_version=version),
    )  # fmt: skip


@router.post("/{tenant}/{entity}/{number}/comment", responses=_WRITES)
async def comment_case(  # noqa: PLR0913 - the case, the body, and the request's context
    *,
    tenant: TenantId,
    entity: EntityId,
    number: Number,
    body: CommentRequest,
    principal: Writer,
    ctx: Context,
    response: Response,
    if_match: IfMatch = "",
) -> CaseSummary:
    """Add a comment to the case's timeline."""
    version = _version(if_match, required=False)
    by = principal.review_actor()
    return await _act(
        ctx=ctx, principal=principal, tenant=tenant, entity=entity, number=number,
        response=response,
        action=lambda s: s.comment(tenant, entity, number, body.text, by=by, if_version=version),
    )  # fmt: skip


@router.post(
    "/{tenant}/{entity}/{number}/decide", responses=problems(403, 404, 409, 412, 422, 428, 503)
)
async def decide_case(  # noqa: PLR0913 - the case, the body, and the request's context
    *,
    tenant: TenantId,
    entity: EntityId,
    number: Number,
    body: DecideRequest,
    principal: Writer,
    ctx: Context,
    response: Response,
    if_match: FencedIfMatch,
) -> CaseSummary:
    """Decide the case: ``confirmed``, ``false_positive`` or ``escalated``, with a reason.

    Needs ``If-Match`` with the case's ETag (422 without it); 412 when the
    case has moved on (someone decided, commented or reassigned it since).
    """
    version = _version(if_match, required=True)
    by = principal.review_actor()
    return await _act(
        ctx=ctx, principal=principal, tenant=tenant, entity=entity, number=number,
        response=response, action=lambda s: s.decide(
            tenant, entity, number, body.outcome, body.reason, by=by, level=body.level,
            if_version=version,
        ),
    )  # fmt: skip


@router.post(
    "/{tenant}/{entity}/{number}/reopen", responses=problems(403, 404, 409, 412, 422, 428, 503)
)
async def reopen_case(  # noqa: PLR0913 - the case, the body, and the request's context
    *,
    tenant: TenantId,
    entity: EntityId,
    number: Number,
    body: ReopenRequest,
    principal: Writer,
    ctx: Context,
    response: Response,
    if_match: FencedIfMatch,
) -> CaseSummary:
    """Open a decided case again, with a reason; needs ``If-Match`` as ``decide`` does."""
    version = _version(if_match, required=True)
    by = principal.review_actor()
    return await _act(
        ctx=ctx, principal=principal, tenant=tenant, entity=entity, number=number,
        response=response,
        action=lambda s: s.reopen(tenant, entity, number, body.reason, by=by, if_version=version),
    )  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)
