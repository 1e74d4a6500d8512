"""The operators' pages: dead letters (list, show, replay, purge) and the pipeline's status.

Replay and purge each have a confirmation page whose form does the deed;
both go through the API's own routes (``riskpipe.api._dead_letters``), so
the audit stream records them with the session's ``name (role)``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

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
)

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_PREVIEW = 4000
_WINDOW = timedelta(minutes=1)
"""Throughput is what was stored over the last minute."""
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


def _pretty(original: str) -> str:
    """The payload indented when it is JSON (most are), else as it is."""
    try:
        return json.dumps(json.loads(original), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than it is worth
        return original


@router.get("/dead-letters/{sequence}")
async def dead_letter(request: Request, sequence: str) -> Response:
    """One dead letter: the error, the attempts, and a preview of its payload."""
    letter = await _detail(request, sequence, Permission.DEAD_LETTERS_READ)
    principal = request.state.console_session.principal
    text = _pretty(letter.original)
    return render(request, "dead_letter.html", title=f"Dead letter {letter.dlq_sequence}",
                  letter=letter, preview=text[:_PREVIEW], cut=len(text) > _PREVIEW,
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


async def _stored_since(store: EventStore, category: str, when: datetime) -> int:
    """How many messages of ``category``'s stream were stored at or after ``when``.

    Stored times grow with the sequence: a binary search over a handful of
    direct gets, as :func:`projections.audit.first_stored_after` does for evidence.
    """
    stream = store.config.stream_for(category)
    state = await store.stream_state(stream)
    if not state["messages"]:
        return 0
    last = int(state["last_seq"])
    low, high = int(state["first_seq"]), last + 1
    everything = f"{store.config.prefix}.{category}.>"
    while low < high:
        middle = (low + high) // 2
        rec = await store.get(stream, middle, next_on_subject=everything)
        if rec is None:
            high = middle
        elif rec.stored_at < when:
            low = rec.sequence + 1
        else:
            high = middle
    return last + 1 - low


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
    since = datetime.now(UTC) - _WINDOW
    rates = {
        category: await _stored_since(ctx.store, category, since) / _WINDOW.total_seconds()
        for category in ("evidence", "risk")
    }
    return render(request, "status.html", title="Status", found=found, partitions=views,
                  rates=rates, window=int(_WINDOW.total_seconds()), now=time.time())  # fmt: skip
