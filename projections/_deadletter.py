"""Dead letters: a poison message's original bytes and headers, with why it failed.

A dead letter must itself fit in one message: when the original is too large
for that, its copy is cut short (and said to be), while the reference to it,
its stream and sequence and its hash, always stays complete.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from eventstore import CloudEvent, EventId, SourceRef, StoreConfig, encode_event, validate_token
from projections._message import Message, Output
from projections._streams import DLQ_STREAM

__all__ = [
    "DEAD_LETTERED",
    "ENVELOPE_FIELDS",
    "DeadLetterData",
    "dead_letter",
    "dlq_subject",
    "projection_source",
]

DEAD_LETTERED = "riskpipe.dlq.deadlettered.v1"
ENVELOPE_FIELDS = ("id", "source", "type", "subject", "tenant", "time", "correlationid")
"""The envelope attributes a dead letter keeps as text, read from the original's JSON."""
_FIELD_CHARS = 256
"""At most this many characters of each envelope attribute are kept."""


def projection_source(projection: str) -> str:
    """The CloudEvents ``source`` of everything a projection publishes."""
    return f"riskpipe/projection/{projection}"


class DeadLetterData(BaseModel):
    """The ``data`` of a dead letter: enough to inspect, fix and replay the original."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    projection: str
    stream: str
    sequence: int = Field(ge=1)
    subject: str
    delivery_count: int = Field(ge=1)
    error_type: str
    error_message: str = Field(max_length=4000)
    permanent: bool
    original: str
    """The original message bytes, base64 (their beginning only when ``original_truncated``)."""
    original_headers: dict[str, str]
    """The original's headers, parsed: for reading (``original_header_block`` is exact)."""
    payload_sha256: str
    """SHA-256 of the complete original bytes, truncated copy or not."""
    evidence_id: str | None = None
    evidence_source: str | None = None
    trace_id: str | None = None
    dead_lettered_at: AwareDatetime
    original_size: int | None = Field(default=None, ge=0)
    """Size of the complete original bytes."""
    original_truncated: bool = False
    """The copy of the original was cut short to fit in one message (its headers
    dropped too when even they did not fit); ``stream`` and ``sequence`` point at
    the complete original."""
    envelope: dict[str, str] = Field(default_factory=dict)
    """The original's envelope attributes that could be read, as text (at most
    256 characters each), also when it was not a valid event."""
    original_header_block: str | None = None
    """The original's header block as it arrived, base64: byte for byte, with
    every duplicate, case and space that ``original_headers`` cannot hold (none
    when it had no headers, in dead letters older than this field, or dropped
    with the headers when they did not fit)."""

    def original_bytes(self) -> bytes:
        """The original message bytes."""
        return base64.b64decode(self.original)

    def header_block(self) -> bytes | None:
        """The original's header block as it arrived, if the dead letter kept it."""
        block = self.original_header_block
        return None if block is None else base64.b64decode(block)


def dead_letter(  # noqa: PLR0913 - the message, why, when, and how large it may be
    message: Message,
    error: BaseException,
    *,
    permanent: bool,
    now: datetime,
    config: StoreConfig,
    max_bytes: int | None = None,
) -> Output:
    """The dead letter for ``message``: one per poison message, whatever the redeliveries.

    Its id is the original's stream position, so a redelivered poison message
    produces the same ``Nats-Msg-Id`` and the store keeps one dead letter.
    ``max_bytes`` bounds its encoded size (see ``EventStore.payload_limit``):
    the copy of the original is cut short to fit, never the rest.
    """
    delivery = message.delivery
    event: CloudEvent | None = message.context.get("event")
    read = _readable(event, delivery.data)
    evidence_id = event.id if event is not None else _valid(_EVENT_ID, read.get("id"))
    data = DeadLetterData(
        projection=message.projection,
        stream=delivery.stream,
        sequence=delivery.stream_seq,
        subject=delivery.subject,
        delivery_count=delivery.num_delivered,
        error_type=type(error).__name__,
        error_message=str(error)[:4000],
        permanent=permanent,
        original=base64.b64encode(delivery.data).decode(),
        original_headers=dict(delivery.headers),
        original_header_block=(
            base64.b64encode(delivery.header_block).decode() if delivery.header_block else None
        ),
        original_size=len(delivery.data),
        payload_sha256=hashlib.sha256(delivery.data).hexdigest(),
        evidence_id=evidence_id,
        evidence_source=(
            event.source if event is not None else _valid(_SOURCE, read.get("source"))
        ),
        trace_id=message.context.get("trace_id"),
        dead_lettered_at=now,
        envelope=_envelope(read),
    )
    envelope = CloudEvent(
        id=f"{delivery.stream}-{delivery.stream_seq}",
        source=projection_source(message.projection),
        type=DEAD_LETTERED,
        subject=message.entity,
        tenant=message.tenant,
        time=now,
        causationid=evidence_id,
        correlationid=event.correlationid if event is not None else None,
    )
    if max_bytes is not None:
        data = _fitted(envelope, data, delivery.data, max_bytes)
    subject = dlq_subject(config, message.projection, message.tenant, message.entity)
    # the producer's trace context, passed on when no span of ours continues it
    headers = dict(message.context.get("trace_headers") or {})
    return Output(envelope, subject=subject, data=data, headers=headers)


def dlq_subject(config: StoreConfig, projection: str, tenant: str, entity: str) -> str:
    """``<prefix>.dlq.<projection>.<tenant>.<entity>``: where a projection's dead letters go.

    Raises:
        ValueError: a part is not a valid token.
    """
    validate_token(projection, what="projection")
    subject = config.subject(DLQ_STREAM.category, tenant, entity)
    prefix = f"{config.prefix}.{DLQ_STREAM.category}."
    return subject.replace(prefix, f"{prefix}{projection}.", 1)


def _fitted(
    envelope: CloudEvent, data: DeadLetterData, original: bytes, limit: int
) -> DeadLetterData:
    """``data`` with as much of the original as fits in ``limit`` encoded bytes."""
    if len(encode_event(envelope, data)) <= limit:
        return data
    bare = data.model_copy(update={"original": "", "original_truncated": True})
    room = limit - len(encode_event(envelope, bare))
    if room < 0:  # not even the headers fit beside the rest: the original has them
        bare = bare.model_copy(update={"original_headers": {}, "original_header_block": None})
        room = limit - len(encode_event(envelope, bare))
    # base64 needs no JSON escaping: each 3 bytes kept cost exactly 4 characters
    keep = max(0, room) // 4 * 3
    return bare.model_copy(update={"original": base64.b64encode(original[:keep]).decode()})


def _readable(event: CloudEvent | None, raw: bytes) -> dict[str, object]:
    """The envelope attributes of the original that can be read, as they are."""
    if event is not None:
        return {name: getattr(event, name) for name in ENVELOPE_FIELDS}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {name: doc.get(name) for name in ENVELOPE_FIELDS}


def _envelope(found: dict[str, object]) -> dict[str, str]:
    """``found`` as bounded text: what a dead letter keeps of the original's envelope."""
    return {
        name: _text(value)[:_FIELD_CHARS]
        for name, value in found.items()
        if isinstance(value, str | int | float | datetime) and not isinstance(value, bool)
    }


_EVENT_ID: TypeAdapter[str] = TypeAdapter(EventId)
_SOURCE: TypeAdapter[str] = TypeAdapter(SourceRef)


def _valid(kind: TypeAdapter[str], value: object) -> str | None:
    """``value`` when it is a valid id (or source) as an event would carry it, else ``None``.

    So a dead letter of JSON that broke the schema elsewhere still names its evidence.
    """
    if not isinstance(value, str):
        return None
    try:
        return kind.validate_python(value)
    except ValidationError:
        return None


def _text(value: str | float | datetime) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
