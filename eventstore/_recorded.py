"""Events as the stream holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.errors import DecodeError

if TYPE_CHECKING:
    from datetime import datetime

    from eventstore._envelope import CloudEvent
    from eventstore._jetstream._client import RawMessage
    from eventstore._schemas import EventSchemas
    from eventstore._topology import StoreConfig

__all__ = ["RecordedEvent", "to_recorded"]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A stored message: where it sits, when it was stored, and the event it holds.

    ``event`` is ``None`` when the stored bytes are not a valid event (written
    by something that bypassed the store); ``error`` then says why.
    """

    stream: str
    sequence: int
    subject: str
    stored_at: datetime
    headers: dict[str, str]
    payload: bytes
    event: CloudEvent | None
    error: DecodeError | None = None


def to_recorded(raw: RawMessage, schemas: EventSchemas, config: StoreConfig) -> RecordedEvent:
    """Decode a raw stored message strictly; keep the error instead of raising."""
    try:
        event = schemas.parse(
            raw.data, max_bytes=config.max_payload_bytes * 2, max_depth=config.max_depth
        )
    except DecodeError as exc:
        return RecordedEvent(
            raw.stream, raw.seq, raw.subject, raw.time, raw.headers, raw.data, None, exc
        )
    return RecordedEvent(raw.stream, raw.seq, raw.subject, raw.time, raw.headers, raw.data, event)
