"""Reading an entity's review events back into its cases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.review._case import EntityCases
from projections.review._events import REVIEW_TYPES

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["read_cases"]


async def read_cases(store: EventStore, tenant: str, entity: str) -> EntityCases:
    """The entity's cases as its review events leave them, and their version.

    Events that do not decode, or of a type review does not know, are skipped
    (they still count for the version: the fence is the subject's last sequence).
    One direct get per review event of the entity (a handful, usually).
    """
    cases = EntityCases(tenant, entity)
    stream = store.config.stream_for("review")
    subject = store.config.subject("review", tenant, entity)
    sequence = 1
    # direct gets, one per review event: no reader consumer to create per call
    while (rec := await store.get(stream, sequence, next_on_subject=subject)) is not None:
        sequence = rec.sequence + 1
        event = rec.event
        model = REVIEW_TYPES.get(event.type) if event is not None else None
        if event is None or model is None or event.data is None:
            cases.version = max(cases.version, rec.sequence)
            continue
        cases.apply(event.type, model.model_validate(event.data), rec.sequence, event.time)
    return cases
