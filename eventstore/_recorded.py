"""Events as the stream holds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.errors import DecodeError

if TYPE_CHECKING:
    from datetime import datetime

    from pydantic import BaseModel

    from eventstore._binary import BinaryHeaders
    from eventstore._envelope import CloudEvent
    from eventstore._jetstream._client import RawMessage
    from eventstore._schemas import EventSchemas
    from eventstore._topology import StoreConfig

__all__ = ["RecordedEvent", "decode_recorded", "to_recorded"]


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
    header_block: bytes | None = None
    """The headers as stored, the raw ``NATS/1.0`` block (``headers`` is its parsed view)."""


def _limits(config: StoreConfig) -> dict[str, int]:
    # derived events (a dead letter holds the original base64-encoded) get twice the room
    return {"max_bytes": config.max_payload_bytes * 2, "max_depth": config.max_depth}


def _headers(raw: RawMessage) -> BinaryHeaders:
    """The message's headers as stored, for a binary-mode event: the block when it is kept."""
    return raw.header_block if raw.header_block is not None else raw.parsed_headers


def to_recorded(raw: RawMessage, schemas: EventSchemas, config: StoreConfig) -> RecordedEvent:
    """Decode a raw stored message strictly; keep the error instead of raising.

    A message in the NATS binding's binary mode (``ce-`` headers, data as the
    payload) is decoded from its headers and payload (see :mod:`eventstore._binary`).
    """
    try:
        event = schemas.parse(raw.data, headers=_headers(raw), **_limits(config))
    except DecodeError as exc:
        return RecordedEvent(
            raw.stream, raw.seq, raw.subject, raw.time, raw.headers, raw.data, None, exc,
            raw.header_block,
        )  # fmt: skip
    return RecordedEvent(
        raw.stream, raw.seq, raw.subject, raw.time, raw.headers, raw.data, event, None,
        raw.header_block,
    )  # fmt: skip


def decode_recorded(
    raw: RawMessage, schemas: EventSchemas, config: StoreConfig, *, upcast: bool = True
) -> tuple[CloudEvent, BaseModel]:
    """The event of a stored message and its typed data, as :meth:`EventSchemas.decode` gives them.

    Accepts what :func:`to_recorded` accepts, without normalising the envelope's data,
    and reads it in its type's latest version (see :meth:`EventSchemas.upcast`),
    or, without ``upcast``, in the version it was stored as.

    Raises:
        DecodeError: the stored bytes are not a valid event.
    """
    limits = _limits(config)
    return schemas.decode(
        raw.data,
        headers=_headers(raw),
        max_bytes=limits["max_bytes"],
        max_depth=limits["max_depth"],
        upcast=upcast,
    )
