"""``POST /api/evidence``: record evidence over HTTP, for services that do not speak NATS.

A body is a JSON array of evidence events, or NDJSON (one event per line,
``Content-Type: application/x-ndjson``). Each event is checked exactly as
``riskpipe publish`` checks a line (:func:`riskpipe.ingest.publishable`, the
same reasons), must be of one of the token's tenants, and is appended with
the store's ``append_many``: once per ``(source, id)``, as every other way in.

The answer is 200 with one result per event, in the request's order:
``stored``, ``duplicate`` or ``rejected`` with the reason; a rejected event
never fails the others. The request as a whole fails only when its body is
unusable (empty, not JSON, too large, another media type: 400, 413, 415), or
when NATS cannot take the events now: 503, and then no result is given at
all, since some events may have been stored and others not; sending the
same body again is safe, the stored ones come back as duplicates.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Request
from prometheus_client import Counter
from pydantic import BaseModel

from analyzers import EVIDENCE_TYPES
from eventstore import AppendResult
from eventstore._codec import DEFAULT_MAX_DEPTH, decode_json, encode_json
from eventstore.errors import DecodeError, StoreUnavailableError, TransientStoreError
from riskpipe.api._auth import Context, require
from riskpipe.api._limits import BodyPolicy, media_type
from riskpipe.api._openapi import API_PREFIX, problems
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import Permission
from riskpipe.api._tokens import Principal
from riskpipe.ingest import NotEvidenceError, publishable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import CollectorRegistry

    from eventstore import CloudEvent, EventStore

__all__ = [
    "DEFAULT_MAX_EVIDENCE_BYTES",
    "MAX_EVENTS",
    "NDJSON",
    "PATH",
    "EvidenceMetrics",
    "IngestResult",
    "ItemResult",
    "body_policy",
    "router",
]

PATH = f"{API_PREFIX}/evidence"
NDJSON = "application/x-ndjson"
DEFAULT_MAX_EVIDENCE_BYTES = 1024 * 1024
"""The largest evidence body read: a batch of 500 typical events is about 200 KB."""
MAX_EVENTS = 1000
"""Events in one request at most: each gets a result, so a body of tiny lines cannot ask
for an answer many times its own size."""
_DUPLICATE_CHECKS = 50
"""Stored originals of duplicates looked up at once."""

router = APIRouter(prefix=PATH, tags=["evidence"])
Writer = Annotated[Principal, Depends(require(Permission.EVIDENCE_WRITE))]
Result = Literal["stored", "duplicate", "rejected"]
_log = structlog.get_logger("riskpipe.api")


class TenantNotAllowedError(ValueError):
    """An event of a tenant the token does not record for."""

    def __init__(self, tenant: str) -> None:
        super().__init__(f"the token may not record evidence of tenant {tenant!r}")


class IdTakenError(ValueError):
    """An event whose ``(source, id)`` names evidence of a tenant the token does not see."""

    def __init__(self, source: str, event_id: str) -> None:
        super().__init__(
            f"source {source!r} and id {event_id!r} name evidence recorded already,"
            " of a tenant this token does not see: nothing was stored; use another id"
        )


class ItemResult(BaseModel):
    """What became of one event of the request."""

    index: int
    """Its position among the request's events, from 0 (NDJSON: blank lines are no event)."""
    line: int | None = None
    """NDJSON: its line number, from 1."""
    result: Result
    id: str | None = None
    source: str | None = None
    """The event's ``id`` and ``source``, once it validated."""
    sequence: int | None = None
    """Stored or duplicate: its sequence in the evidence stream (a duplicate's: the original's)."""
    reason: str | None = None
    """Rejected: why, as ``riskpipe publish`` says it for a line."""
    error: str | None = None
    """Rejected: the error's class name, e.g. ``SchemaViolationError``."""


class IngestResult(BaseModel):
    """One result per event, in the request's order, and the counts."""

    stored: int
    duplicates: int
    rejected: int
    items: list[ItemResult]


class EvidenceMetrics:
    """``riskpipe_api_evidence_items_total``: events posted, by result."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Counter(
            "riskpipe_api_evidence_items_total",
            "Evidence events posted to the API, by result (stored, duplicate, rejected).",
            ["result"],
            registry=registry,
        )
        for result in ("stored", "duplicate", "rejected"):
            self.items.labels(result)


def body_policy(limit: int = DEFAULT_MAX_EVIDENCE_BYTES) -> BodyPolicy:
    """The evidence route's body policy: its own limit, and NDJSON beside JSON."""
    return BodyPolicy(limit, frozenset({NDJSON}))


_EVENT_SCHEMA: dict[str, Any] = {
    "description": "An evidence event, as a line of `riskpipe publish` (its JSON Schema:"
    " `riskpipe schema --publish`). Any other value is that item's `rejected` result, with"
    " the reason, not a refused request.",
}
_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
        NDJSON: {"schema": {"type": "string", "description": "One evidence event per line."}},
    },
}


class _Item:
    """One event of the request on its way: where it was, and what it became."""

    __slots__ = ("event", "index", "line", "outcome", "raw")

    def __init__(self, index: int, line: int | None, raw: bytes | Exception) -> None:
        self.index = index
        self.line = line
        self.raw = raw
        self.event: CloudEvent | None = None
        self.outcome: AppendResult | Exception | None = None

    def result(self) -> ItemResult:
        event, outcome = self.event, self.outcome
        ids = {} if event is None else {"id": event.id, "source": event.source}
        if isinstance(outcome, Exception):
            return ItemResult(
                index=self.index, line=self.line, result="rejected", **ids,
                reason=str(outcome), error=type(outcome).__name__,
            )  # fmt: skip
        assert outcome is not None  # noqa: S101 - every item is settled before it is answered
        result: Result = "duplicate" if outcome.duplicate else "stored"
        return ItemResult(
            index=self.index, line=self.line, result=result, **ids, sequence=outcome.sequence
        )


def _lines(body: bytes) -> Iterator[_Item]:
    """The NDJSON body's events, blank lines skipped, as ``riskpipe publish`` reads a file."""
    index = 0
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.rstrip(b"\r")
        if line.strip():
            yield _Item(index, number, line)
            index += 1


def _array(body: bytes) -> Iterator[_Item]:
    """The JSON array's events, each as the bytes of one ``publish`` line.

    Raises:
        ProblemError: 400, the body is not JSON, or not an array.
    """
    try:
        # strict as a publish line (duplicate keys, NaN, depth), one level more for the array
        document = decode_json(body, max_bytes=len(body), max_depth=DEFAULT_MAX_DEPTH + 1)
    except DecodeError as exc:
        raise ProblemError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise ProblemError(
            400,
            "the request body must be a JSON array of evidence events"
            f" (or one event per line, Content-Type: {NDJSON})",
        )
    for index, value in enumerate(document):
        try:
            yield _Item(index, None, encode_json(value))  # canonical: decoded again quickly
        except DecodeError as exc:
            yield _Item(index, None, exc)


def _parsed(request: Request, body: bytes) -> list[_Item]:
    """The request's events, not yet checked.

    Raises:
        ProblemError: 400, the body is empty, not JSON, or not an array; 413, too many events.
    """
    if not body.strip():
        raise ProblemError(
            400, f"the request body is empty: send a JSON array of evidence events, or {NDJSON}"
        )
    ndjson = media_type(request.headers.get("content-type")) == NDJSON
    items = list(itertools.islice(_lines(body) if ndjson else _array(body), MAX_EVENTS + 1))
    if len(items) > MAX_EVENTS:
        raise ProblemError(413, f"a request holds {MAX_EVENTS} events at most; send more requests")
    return items


def _check(item: _Item, store: EventStore, principal: Principal) -> None:
    """Check ``item`` as ``publish`` checks a line, then its tenant; a refusal is its outcome."""
    if isinstance(item.raw, Exception):
        item.outcome = item.raw
        return
    try:
        event = publishable(
            store.schemas,
            item.raw,
            max_bytes=store.config.max_payload_bytes,
            types=EVIDENCE_TYPES,
        )
    except (DecodeError, NotEvidenceError) as exc:
        item.outcome = exc
        return
    item.event = event
    if not principal.sees(event.tenant):
        item.outcome = TenantNotAllowedError(event.tenant)


async def _append(store: EventStore, items: list[_Item]) -> None:
    """Append the checked events; their results become the items' outcomes.

    Raises:
        TransientStoreError: NATS could not take some of them now (503; nothing is answered).
    """
    valid = [item for item in items if item.outcome is None]
    if not valid:
        return
    if not store.client.connected:
        raise StoreUnavailableError("NATS connection down")
    results = await store.append_many(item.event for item in valid if item.event is not None)
    for result in results:
        if isinstance(result, TransientStoreError):
            raise result
    for item, result in zip(valid, results, strict=True):
        item.outcome = result


async def _own_duplicates(store: EventStore, items: list[_Item], principal: Principal) -> None:
    """Refuse a duplicate whose original is of a tenant the token does not see.

    ``(source, id)`` is an event's identity across tenants: without this, a
    token could learn another tenant's sequences, and believe its own event
    stored when it was not.
    """
    if principal.all_tenants:
        return
    gate = asyncio.Semaphore(_DUPLICATE_CHECKS)

    async def check(item: _Item, event: CloudEvent, result: AppendResult) -> None:
        async with gate:
            original = await store.client.direct_get(result.stream, result.sequence)
        # a subject ends <tenant>.<entity>, both tokens: the tenant is the one before last
        if original is not None and not principal.sees(original.subject.split(".")[-2]):
            item.outcome = IdTakenError(event.source, event.id)

    await asyncio.gather(
        *(
            check(item, item.event, item.outcome)
            for item in items
            if item.event is not None
            and isinstance(item.outcome, AppendResult)
            and item.outcome.duplicate
        )
    )


@router.post(
    "", responses=problems(403, 413, 422, 503), openapi_extra={"requestBody": _REQUEST_BODY}
)
async def record_evidence(request: Request, principal: Writer, ctx: Context) -> IngestResult:
    """Record evidence: a JSON array of events, or NDJSON; one result per event, in order.

    Each event is checked as `riskpipe publish` checks a line, must be of one
    of the token's tenants, and is stored once per `(source, id)`. A refused
    event is `rejected` with the reason, and the others are stored. 503 when
    NATS cannot take them now: nothing is answered, and sending the same body
    again is safe.
    """
    items = _parsed(request, await request.body())
    for item in items:
        _check(item, ctx.store, principal)
    await _append(ctx.store, items)
    await _own_duplicates(ctx.store, items, principal)
    answered = [item.result() for item in items]
    counts = {"stored": 0, "duplicate": 0, "rejected": 0}
    for answer in answered:
        counts[answer.result] += 1
    metrics: EvidenceMetrics | None = getattr(request.app.state, "evidence_metrics", None)
    if metrics is not None:
        for result, count in counts.items():
            if count:
                metrics.items.labels(result).inc(count)
    _log.info("api.evidence", name=principal.name, events=len(items), **counts)
    return IngestResult(
        stored=counts["stored"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        items=answered,
    )
