"""``/api/dead-letters``: list, show, replay and purge, within the token's tenants.

Everything goes through :class:`projections.DeadLetterQueue`, as ``riskpipe
dlq`` does, so a replay or purge made here is recorded on the audit stream
the same way, its actor being the token's ``name (role)``.

A dead letter belongs to the tenant of its event and to the tenant of the
evidence it holds (the two differ only for a message written around the
store): a token sees it only if it sees both. One it does not see is
answered exactly as a sequence that holds no dead letter, 404 with the same
detail, so sequences of other tenants cannot be told from gaps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from projections import (
    DeadLetter,
    DeadLetterQueue,
    NotADeadLetterError,
    OriginalUnavailableError,
    ReplayRefusedError,
    split_subject,
)
from riskpipe.api._auth import Context, require
from riskpipe.api._openapi import API_PREFIX, problems
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import Permission
from riskpipe.api._tokens import Principal

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/dead-letters", tags=["dead letters"])

MAX_PAGE = 500
DEFAULT_PAGE = 100
_MAX_SEQUENCE = 2**63 - 1
Sequence = Annotated[int, Path(ge=1, le=_MAX_SEQUENCE, description="The DLQ stream sequence.")]
Reader = Annotated[Principal, Depends(require(Permission.DEAD_LETTERS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.DEAD_LETTERS_WRITE))]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]


class DeadLetterSummary(BaseModel):
    """A dead letter in a list: where it came from, why, and what became of it."""

    dlq_sequence: int
    status: Literal["pending", "replayed"]
    replayed_as: int | None
    """The evidence sequence it was replayed as."""
    tenant: str
    entity: str
    stream: str
    sequence: int
    """Its original's stream sequence."""
    evidence_id: str | None
    error_type: str
    error: str
    permanent: bool
    delivery_count: int
    dead_lettered_at: datetime

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterSummary:
        """The summary of ``letter``."""
        d = letter.data
        return cls(
            dlq_sequence=letter.sequence, status=letter.status, replayed_as=letter.replayed_as,
            tenant=letter.tenant, entity=letter.entity, stream=d.stream, sequence=d.sequence,
            evidence_id=d.evidence_id, error_type=d.error_type, error=d.error_message,
            permanent=d.permanent, delivery_count=d.delivery_count,
            dead_lettered_at=d.dead_lettered_at,
        )  # fmt: skip


class DeadLetterDetail(DeadLetterSummary):
    """A dead letter in full, with its original."""

    original: str
    """The original bytes as text (invalid UTF-8 replaced); ``original_base64`` is exact."""
    original_base64: str
    original_headers: dict[str, str]
    original_header_block: str | None
    payload_sha256: str
    trace_id: str | None
    original_size: int | None
    original_truncated: bool
    envelope: dict[str, str]

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterDetail:
        """The detail of ``letter``."""
        d = letter.data
        block = d.header_block()
        return cls(
            **DeadLetterSummary.of(letter).model_dump(),
            original=d.original_bytes().decode("utf-8", "replace"),
            original_base64=d.original,
            original_headers=d.original_headers,
            original_header_block=None if block is None else block.decode("utf-8", "replace"),
            payload_sha256=d.payload_sha256,
            trace_id=d.trace_id,
            original_size=d.original_size,
            original_truncated=d.original_truncated,
            envelope=d.envelope,
        )


class DeadLetterPage(BaseModel):
    """A page of dead letters, oldest first."""

    items: list[DeadLetterSummary]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""


class ReplayRequest(BaseModel):
    """Why the dead letter is replayed (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = ""


class PurgeRequest(BaseModel):
    """Why the dead letter is purged."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Reason, Field(min_length=1)]


class Replayed(BaseModel):
    """A replay done: the evidence sequence the original was sent again as."""

    dlq_sequence: int
    replayed_as: int
    actor: str


class Purged(BaseModel):
    """A purge done."""

    dlq_sequence: int
    purged: Literal[True] = True
    actor: str


def _visible(principal: Principal, letter: DeadLetter) -> bool:
    origin, _ = split_subject(letter.data.subject)
    return principal.sees(letter.tenant) and principal.sees(origin)


def _not_found(sequence: int) -> ProblemError:
    return ProblemError(404, f"no dead letter at DLQ sequence {sequence}")


async def _letter(queue: DeadLetterQueue, principal: Principal, sequence: int) -> DeadLetter:
    """The dead letter at ``sequence``, if the token sees it.

    Raises:
        ProblemError: 404, none there, or not of the token's tenants (the same answer).
    """
    try:
        letter = await queue.get(sequence)
    except NotADeadLetterError:
        raise _not_found(sequence) from None
    if not _visible(principal, letter):
        raise _not_found(sequence)
    return letter


@router.get("", responses=problems(403, 422, 503))
async def list_dead_letters(
    principal: Reader,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,19}$", description="`next_cursor` of the last page.")
    ] = None,
    status: Literal["pending", "replayed"] | None = None,
) -> DeadLetterPage:
    """The dead letters of the token's tenants still in the queue, oldest first."""
    after = int(cursor) if cursor is not None else 0
    if after > _MAX_SEQUENCE:
        raise ProblemError(422, "the cursor is out of range")

    def wanted(letter: DeadLetter) -> bool:
        return _visible(principal, letter) and status in (None, letter.status)

    queue = DeadLetterQueue(ctx.store, ctx.projection)
    found = await queue.list(after=after, limit=limit + 1, where=wanted)
    page = found[:limit]
    more = len(found) > limit
    return DeadLetterPage(
        items=[DeadLetterSummary.of(x) for x in page],
        next_cursor=str(page[-1].sequence) if more else None,
    )


@router.get("/{sequence}", responses=problems(403, 404, 422, 503))
async def show_dead_letter(
    sequence: Sequence,
    principal: Reader,
    ctx: Context,
) -> DeadLetterDetail:
    """One dead letter in full, with its original."""
    queue = DeadLetterQueue(ctx.store, ctx.projection)
    return DeadLetterDetail.of(await _letter(queue, principal, sequence))


@router.post("/{sequence}/replay", responses=problems(403, 404, 409, 422, 503))
async def replay_dead_letter(
    sequence: Sequence,
    principal: Writer,
    ctx: Context,
    body: ReplayRequest | None = None,
) -> Replayed:
    """Send the original back through the projection, once; recorded on the audit stream.

    A dead letter replayed already, or being replayed, is refused with 409
    (``urn:riskpipe:problem:replay-refused``), saying when, by whom and as
    which evidence sequence.
    """
    queue = DeadLetterQueue(ctx.store, ctx.projection)
    await _letter(queue, principal, sequence)
    reason = body.reason if body is not None else ""
    try:
        new_seq = await queue.replay(sequence, actor=principal.actor, reason=reason)
    except NotADeadLetterError:  # purged meanwhile
        raise _not_found(sequence) from None
    except ReplayRefusedError as exc:
        raise ProblemError(
            409,
            str(exc),
            type_="urn:riskpipe:problem:replay-refused",
            replayed_as=exc.replayed_as,
            replayed_by=exc.actor,
            at=exc.at.isoformat(),
        ) from None
    except OriginalUnavailableError as exc:
        raise ProblemError(
            409, str(exc), type_="urn:riskpipe:problem:original-unavailable"
        ) from None
    return Replayed(dlq_sequence=sequence, replayed_as=new_seq, actor=principal.actor)


@router.post("/{sequence}/purge", responses=problems(403, 404, 422, 503))
async def purge_dead_letter(
    sequence: Sequence,
    body: PurgeRequest,
    principal: Writer,
    ctx: Context,
) -> Purged:
    """Delete the dead letter from the queue; recorded on the audit stream with the reason."""
    queue = DeadLetterQueue(ctx.store, ctx.projection)
    await _letter(queue, principal, sequence)
    try:
        await queue.purge(sequence, actor=principal.actor, reason=body.reason)
    except NotADeadLetterError:  # purged meanwhile
        raise _not_found(sequence) from None
    return Purged(dlq_sequence=sequence, actor=principal.actor)
