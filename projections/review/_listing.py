"""Every case in the log: the review stream read from its start and folded per entity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.review._case import EntityCases

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["all_cases"]


async def all_cases(
    store: EventStore, *, tenants: frozenset[str] | None = None
) -> list[EntityCases]:
    """Every entity's cases (of ``tenants`` only, when given), by first review event.

    Reads the whole review stream: what the SQL read model answers faster,
    and what it is checked against.
    """
    found: dict[tuple[str, str], EntityCases] = {}
    stream = store.config.stream_for("review")
    async for rec in store.read_all(stream=stream):
        event = rec.event
        if event is None:
            continue
        if tenants is not None and event.tenant not in tenants:
            continue
        key = (event.tenant, event.subject)
        found.setdefault(key, EntityCases(*key)).apply_recorded(rec)
    return list(found.values())
