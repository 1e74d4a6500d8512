"""Reading the final state of a chaos run back from the streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections import DEAD_LETTERED
from projections.risk import ASSESSED
from riskpipe.chaos._final import Effect, FinalState, StoredEvidence

if TYPE_CHECKING:
    from eventstore import EventStore, RecordedEvent

__all__ = ["read_final"]

_MSG_ID = "Nats-Msg-Id"


async def read_final(
    store: EventStore,
    *,
    projection: str = "risk",
    max_deliver: int = 5,
    max_in_flight: int = 256,
    workers: int = 1,
) -> FinalState:
    """Evidence, and ``projection``'s assessments and dead letters, as the streams hold them.

    Messages on the risk and dead-letter streams that are no effect of
    ``projection`` are left out; those on the risk stream that are no
    assessment at all are listed as foreign.
    """
    config = store.config
    final = FinalState(
        duplicate_window=config.duplicate_window.total_seconds(),
        max_deliver=max_deliver,
        max_in_flight=max_in_flight,
        workers=workers,
    )
    partitioned = config.partitioned is not None
    async for rec in store.read_all(stream=config.stream_for("evidence")):
        parts = rec.subject.split(".")
        final.evidence.append(
            StoredEvidence(
                rec.sequence,
                rec.headers.get(_MSG_ID),
                ".".join(parts[-2:]),
                rec.stored_at.timestamp(),
                int(parts[2]) if partitioned and parts[2].isdecimal() else None,
            )
        )
    async for rec in store.read_all(stream=config.stream_for("risk")):
        if (effect := _assessment(rec, projection)) is not None:
            final.effects.append(effect)
        elif rec.event is None or rec.event.type != ASSESSED:
            final.foreign.append((rec.sequence, rec.headers.get(_MSG_ID)))
    async for rec in store.read_all(stream=config.stream_for("dlq")):
        if (effect := _dead_letter(rec, projection)) is not None:
            final.effects.append(effect)
    return final


def _assessment(rec: RecordedEvent, projection: str) -> Effect | None:
    data = rec.event.data if rec.event is not None and rec.event.type == ASSESSED else None
    if not data or data.get("projection") != projection:
        return None
    evidence = data.get("evidence")
    sequence = evidence.get("sequence") if isinstance(evidence, dict) else None
    if not isinstance(sequence, int):
        return None
    return Effect("assessment", rec.sequence, sequence, rec.stored_at.timestamp())


def _dead_letter(rec: RecordedEvent, projection: str) -> Effect | None:
    data = rec.event.data if rec.event is not None and rec.event.type == DEAD_LETTERED else None
    if not data or data.get("projection") != projection:
        return None
    sequence, deliveries = data.get("sequence"), data.get("delivery_count")
    if not isinstance(sequence, int) or not isinstance(deliveries, int):
        return None
    return Effect("dead-letter", rec.sequence, sequence, rec.stored_at.timestamp(), deliveries)
