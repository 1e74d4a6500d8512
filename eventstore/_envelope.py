"""The CloudEvents 1.0 envelope (structured JSON mode) and recorded events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from eventstore._tokens import EventId, SourceRef, Timestamp, Token

__all__ = ["CloudEvent", "msg_id_for"]

_EVENT_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*$"


def msg_id_for(source: str, event_id: str) -> str:
    """The ``Nats-Msg-Id`` of the event ``(source, id)``: ``<len(source)>:<source>:<id>``.

    Length-prefixed, so that no two different pairs share a key although both
    parts may contain ``:`` (``svc``/``b:c`` gives ``3:svc:b:c``, ``svc:b``/``c``
    gives ``5:svc:b:c``): reading the length first splits any key back into
    the one pair it came from. Every event key begins with a digit; keys that
    riskpipe writes for raw messages never do, so neither can shadow the other.
    """
    return f"{len(source)}:{source}:{event_id}"


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
        """The ``Nats-Msg-Id`` of this event (see :func:`msg_id_for`)."""
        return msg_id_for(self.source, self.id)

    def to_json_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, without unset optional attributes."""
        return self.model_dump(mode="json", exclude_none=True)
