"""The operators' pages: dead letters (list, show, replay, purge) and the pipeline's status.

Replay and purge each have a confirmation page whose form does the deed;
both go through the API's own routes (``riskpipe.api._dead_letters``), so
the audit stream records them with the session's ``name (role)``.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response  # noqa: TC002 - FastAPI reads the annotation

from projections import partition_views
from riskpipe.api import _dead_letters as api
from riskpipe.api import _system
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import Permission
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

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_PREVIEW = 4000
_MAX_SEQUENCE = 2**63 - 1


def _sequence(text: str) -> int:
    if not text.isdecimal() or not 0 < int(text) <= _MAX_SEQUENCE:
        raise PageError(404, "no such dead letter")
    return int(text)


@router.get("/dead-letters")
async def dead_letters(
    request: Request, status: str = "", cursor: str = "", done: str = ""
) -> Response:
    """The dead letters of the session's tenants, oldest first, 100 a page."""
    session = session_of(request, Permission.DEAD_LETTERS_READ)
    wanted = status if status in {"pending", "replayed"} else None
    page = await api.list_dead_letters(
        session.principal, api_context(request), limit=api.DEFAULT_PAGE,
        cursor=cursor if cursor.isdecimal() else None, status=wanted,  # type: ignore[arg-type]
    )  # fmt: skip
    return render(request, "dead_letters.html", title="Dead letters", page=page,
                  wanted=wanted or "", writer=session.principal.may(Permission.DEAD_LETTERS_WRITE),
                  done=done)  # fmt: skip


async def _detail(request: Request, sequence: str, permission: Permission) -> api.DeadLetterDetail:
    session = session_of(request, permission)
    try:
        return await api.show_dead_letter(_sequence(sequence), session.principal,
                                          api_context(request))  # fmt: skip
    except ProblemError as exc:
        raise PageError(exc.status, exc.detail) from None


@router.get("/dead-letters/{sequence}")
async def dead_letter(request: Request, sequence: str) -> Response:
    """One dead letter: the error, the attempts, and a preview of its payload."""
    letter = await _detail(request, sequence, Permission.DEAD_LETTERS_READ)
    principal = request.state.console_session.principal
    return render(request, "dead_letter.html", title=f"Dead letter {letter.dlq_sequence}",
                  letter=letter, preview=letter.original[:_PREVIEW],
                  cut=len(letter.original) > _PREVIEW,
                  writer=principal.may(Permission.DEAD_LETTERS_WRITE))  # fmt: skip


@router.get("/dead-letters/{sequence}/{action}")
async def confirm(request: Request, sequence: str, action: str) -> Response:
    """The confirmation step of a replay or purge."""
    if action not in {"replay", "purge"}:
        raise PageError(404, "no such action")
    letter = await _detail(request, sequence, Permission.DEAD_LETTERS_WRITE)
    return render(request, "confirm.html", title=f"{action.title()} dead letter",
                  letter=letter, action=action, error="")  # fmt: skip


@router.post("/dead-letters/{sequence}/{action}")
async def act(request: Request, sequence: str, action: str) -> Response:
    """Replay or purge, once confirmed."""
    session = session_of(request, Permission.DEAD_LETTERS_WRITE)
    fields = await form(request, session)
    if action not in {"replay", "purge"}:
        raise PageError(404, "no such action")
    seq = _sequence(sequence)
    ctx = api_context(request)
    reason = fields.get("reason", "")
    try:
        if action == "replay":
            done = await api.replay_dead_letter(seq, session.principal, ctx,
                                                api.ReplayRequest(reason=reason))  # fmt: skip
            return see_other(f"{PREFIX}/dead-letters?done=replayed-{seq}-as-{done.replayed_as}")
        await api.purge_dead_letter(seq, api.PurgeRequest(reason=reason), session.principal, ctx)
    except ValidationError:
        letter = await _detail(request, sequence, Permission.DEAD_LETTERS_WRITE)
        return render(request, "confirm.html", status=422, title="Purge dead letter",
                      letter=letter, action=action, error="A purge needs a reason.")  # fmt: skip
    except ProblemError as exc:
        raise PageError(exc.status, exc.detail) from None
    return see_other(f"{PREFIX}/dead-letters?done=purged-{seq}")


@router.get("/status")
async def status_page(request: Request) -> Response:
    """Streams, lag per partition, workers and leases, throughput, DLQ depth, the accounting."""
    session = session_of(request, Permission.STATUS_READ)
    ctx = api_context(request)
    try:
        found = await _system.status(session.principal, ctx)
    except ProblemError as exc:
        raise PageError(exc.status, exc.detail) from None
    views = await partition_views(ctx.store, ctx.projection, source="evidence")
    state = state_of(request)
    now = time.monotonic()
    rate = None
    if state.last_status is not None and now > state.last_status[0]:
        then, assessed = state.last_status
        rate = ((found.assessed - assessed) / (now - then), now - then)
    state.last_status = (now, found.assessed)
    return render(request, "status.html", title="Status", found=found, partitions=views,
                  rate=rate, now=time.time())  # fmt: skip
