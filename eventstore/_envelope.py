"""The CloudEvents 1.0 envelope (structured JSON mode) and recorded events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from eventstore._tokens import EventId, SourceRef, Timestamp, Token

__all__ = ["CloudEvent"]

_EVENT_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*$"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event with riskpipe's extensions.

    ``(source, id)`` is the event's identity and its idempotency key;
    ``subject`` is the entity the event is about, ``tenant`` its owner.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    specversion: Literal["1.0"] = "1.0"
    id: EventId
    source: SourceRef
    type: str = Field(pattern=_EVENT_TYPE, max_length=128)
    subject: Token
    tenant: Token = "default"
    time: Timestamp
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: EventId | None = None
    causationid: EventId | None = None
    data: dict[str, JsonValue] | None = None

    @property
    def msg_id(self) -> str:
        """The ``Nats-Msg-Id`` of this event: ``<source>:<id>``."""
        return f"{self.source}:{self.id}"

    def to_json_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, without unset optional attributes."""
        return self.model_dump(mode="json", exclude_none=True)
