"""Reading an entity's review events back into its cases."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.review._case import EntityCases

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["read_cases"]


async def read_cases(store: EventStore, tenant: str, entity: str) -> EntityCases:
    """The entity's cases as its review events leave them, and their version.

    Messages that do not decode are skipped but count for the version
    (:meth:`EntityCases.apply_recorded`). One direct get per review event of
    the entity (a handful, usually).
    """
    cases = EntityCases(tenant, entity)
    stream = store.config.stream_for("review")
    subject = store.config.subject("review", tenant, entity)
    sequence = 1
    # direct gets, one per review event: no reader consumer to create per call
    while (rec := await store.get(stream, sequence, next_on_subject=subject)) is not None:
        sequence = rec.sequence + 1
        cases.apply_recorded(rec)
    return cases
