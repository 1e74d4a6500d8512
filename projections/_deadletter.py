"""Dead letters: a poison message's original bytes and headers, with why it failed."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime  # noqa: TC003 - pydantic needs it at runtime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from eventstore import CloudEvent, StoreConfig
from projections._message import Message, Output

__all__ = [
    "DEAD_LETTERED",
    "DeadLetterData",
    "dead_letter",
    "projection_source",
]

DEAD_LETTERED = "riskpipe.dlq.deadlettered.v1"


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
    """The original message bytes, base64."""
    original_headers: dict[str, str]
    payload_sha256: str
    evidence_id: str | None = None
    evidence_source: str | None = None
    trace_id: str | None = None
    dead_lettered_at: AwareDatetime

    def original_bytes(self) -> bytes:
        """The original message bytes."""
        return base64.b64decode(self.original)


def dead_letter(
    message: Message, error: BaseException, *, permanent: bool, now: datetime, config: StoreConfig
) -> Output:
    """The dead letter for ``message``: one per poison message, whatever the redeliveries.

    Its id is the original's stream position, so a redelivered poison message
    produces the same ``Nats-Msg-Id`` and the store keeps one dead letter.
    """
    delivery = message.delivery
    event: CloudEvent | None = message.context.get("event")
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
        payload_sha256=hashlib.sha256(delivery.data).hexdigest(),
        evidence_id=event.id if event is not None else None,
        evidence_source=event.source if event is not None else None,
        trace_id=message.context.get("trace_id"),
        dead_lettered_at=now,
    )
    envelope = CloudEvent(
        id=f"{delivery.stream}-{delivery.stream_seq}",
        source=projection_source(message.projection),
        type=DEAD_LETTERED,
        subject=message.entity,
        tenant=message.tenant,
        time=now,
        causationid=event.id if event is not None else None,
        correlationid=event.correlationid if event is not None else None,
    )
    subject = config.dlq_subject(message.projection, message.tenant, message.entity)
    # the producer's trace context, passed on when no span of ours continues it
    headers = dict(message.context.get("trace_headers") or {})
    return Output(envelope, subject=subject, data=data, headers=headers)
