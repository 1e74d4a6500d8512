"""What a producer may append: one evidence or outcome event, checked as ``riskpipe publish`` does.

``riskpipe publish``, the producer client and ``POST /api/evidence`` take
events from outside and must refuse the same things with the same reasons,
so the check is here, once: a strict parse and validation of the event, then
its type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers import EVIDENCE_TYPES
from eventstore.errors import NotProvisionedError, PermissionDeniedError
from projections.learning import OUTCOME_RECORDED

if TYPE_CHECKING:
    from collections.abc import Collection

    from eventstore import CloudEvent, EventSchemas, EventStore
    from eventstore.errors import EventStoreError

__all__ = ["PUBLISHABLE_TYPES", "NotEvidenceError", "outcomes_unstorable", "publishable"]

PUBLISHABLE_TYPES = (*EVIDENCE_TYPES, OUTCOME_RECORDED)
"""What producers record: evidence (either version) and outcomes."""


class NotEvidenceError(ValueError):
    """A line holds a valid event of a type producers may not publish (there)."""

    def __init__(self, event_type: str, allowed: Collection[str] = PUBLISHABLE_TYPES) -> None:
        kinds = "evidence" if set(allowed) <= set(EVIDENCE_TYPES) else "evidence or outcomes"
        super().__init__(f"{kinds} only ({', '.join(allowed)}), not {event_type}")


def publishable(
    schemas: EventSchemas,
    line: bytes,
    *,
    max_bytes: int,
    types: Collection[str] = PUBLISHABLE_TYPES,
) -> CloudEvent:
    """The event one line of a publish file holds: what ``riskpipe publish`` accepts.

    ``riskpipe schema --publish`` is the JSON Schema of exactly these lines.
    ``types`` narrows what is accepted (``POST /api/evidence`` takes evidence only).

    Raises:
        DecodeError: the line is not a valid event.
        NotEvidenceError: it is a valid event of a type not in ``types``.
    """
    event = schemas.parse(line, max_bytes=max_bytes)
    if event.type not in types:
        # assessments, dead letters, review and config events are written by riskpipe itself
        raise NotEvidenceError(event.type, types)
    return event


async def outcomes_unstorable(store: EventStore) -> EventStoreError | None:
    """Why outcomes cannot be stored now (``OUTCOMES`` missing or not visible), or ``None``.

    Asked before appending outcomes: without the stream, each outcome's append
    would fail only after the store's retries, a quarter of a minute each.

    Raises:
        EventStoreError: the look-up itself failed (NATS unavailable).
    """
    try:
        await store.stream_state(store.config.stream_for("outcome"))
    except (NotProvisionedError, PermissionDeniedError) as exc:
        return exc
    return None
