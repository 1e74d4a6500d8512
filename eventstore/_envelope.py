"""The CloudEvents 1.0 envelope (structured JSON mode) and recorded events."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from eventstore._tokens import EventId, SourceRef, Timestamp, Token

__all__ = [
    "ENVELOPE_HINTS",
    "EXTENSION_NAME",
    "INTERPRETED_ATTRIBUTES",
    "MAX_EXTENSIONS",
    "MAX_EXTENSION_CHARS",
    "CloudEvent",
    "ExtensionValue",
    "msg_id_for",
]

_EVENT_TYPE = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*$"

EXTENSION_NAME: Final = r"^[a-z0-9]{1,20}$"
"""A CloudEvents attribute name: lower-case ``a``-``z`` and ``0``-``9``, at most 20 of them.

The spec requires the alphabet and recommends the length; riskpipe requires
both, so that every name is also a valid ``ce-`` header in binary mode.
"""
MAX_EXTENSIONS: Final = 16
"""Extension attributes one event may carry: bounded, as every stored event is kept forever."""
MAX_EXTENSION_CHARS: Final = 256
"""Characters of one string extension value."""
INTERPRETED_ATTRIBUTES: Final = ("tenant", "correlationid", "causationid")
"""The extension attributes riskpipe gives a meaning; any other is kept, never interpreted."""

_INT32 = (-(2**31), 2**31 - 1)
# JSON media types: riskpipe's data is a JSON object, so only these describe it.
_JSON_MEDIA_TYPE = (
    r"^(?:application/(?:[a-z0-9][a-z0-9!#$&^_.-]*\+)?json|text/json)"
    r"(?: ?; ?charset=(?:utf-8|UTF-8))?$"
)
# An absolute URI (RFC 3986): a scheme, a colon, then URI characters only.
_URI = r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$"
_JSON_KINDS = {dict: "an object", list: "an array", float: "a fraction"}
_CONTROL = frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
"""Characters CloudEvents refuses in a string value."""
_EXTENSION_NAME_RE = re.compile(EXTENSION_NAME)
ENVELOPE_HINTS: Final = {
    _JSON_MEDIA_TYPE: "use a JSON media type such as application/json or"
    " application/<name>+json (an event's data is a JSON object)",
    _URI: "use an absolute URI such as https://example.com/schemas/evidence.json",
}
"""What the envelope's own patterns ask for, in words, by pattern."""


def _extension_value(name: str, value: object) -> ExtensionValue:
    """An extension value in the CloudEvents type system as JSON carries it.

    Booleans, 32-bit integers (``1.0`` is the integer 1, as JSON Schema reads
    it) and strings of at most :data:`MAX_EXTENSION_CHARS` characters without
    control characters. Binary, URI and timestamp values are strings in JSON.

    Raises:
        PydanticCustomError: anything else, naming the attribute (``attribute``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if not _INT32[0] <= value <= _INT32[1]:
            raise PydanticCustomError(
                "extension_integer",
                "an integer extension value must fit in 32 bits",
                {"attribute": name},
            )
        return value
    if isinstance(value, str):
        if len(value) > MAX_EXTENSION_CHARS:
            raise PydanticCustomError(
                "extension_too_long",
                "an extension value has at most {limit} characters, not {size}",
                {"limit": MAX_EXTENSION_CHARS, "size": len(value), "attribute": name},
            )
        if not _CONTROL.isdisjoint(value):
            raise PydanticCustomError(
                "extension_control",
                "an extension value may not hold control characters",
                {"attribute": name},
            )
        return value
    raise PydanticCustomError(
        "extension_type",
        "an extension value is a string, an integer or a boolean, not {kind}",
        {"kind": _JSON_KINDS.get(type(value), type(value).__name__), "attribute": name},
    )


ExtensionValue: TypeAlias = bool | int | str
"""The value of an extension attribute, as JSON carries it (``null`` stands for an absent one)."""
_EXTENSION_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "integer", "minimum": _INT32[0], "maximum": _INT32[1]},
        {
            "type": "string",
            "maxLength": MAX_EXTENSION_CHARS,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        },
        {"type": "null"},
    ]
}


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
    Other extension attributes are kept as given (``extensions``) and passed
    on, never interpreted.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        allow_inf_nan=False,
        json_schema_extra={
            "propertyNames": {"pattern": EXTENSION_NAME},
            "additionalProperties": _EXTENSION_SCHEMA,
        },
    )

    specversion: Literal["1.0"] = "1.0"
    id: EventId
    source: SourceRef
    type: str = Field(pattern=_EVENT_TYPE, max_length=128)
    subject: Token
    tenant: Token = "default"
    time: Timestamp
    datacontenttype: Annotated[str, StringConstraints(pattern=_JSON_MEDIA_TYPE)] = (
        "application/json"
    )
    dataschema: Annotated[str, StringConstraints(pattern=_URI, max_length=512)] | None = None
    correlationid: EventId | None = None
    causationid: EventId | None = None
    data: dict[str, JsonValue] | None = None

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, raw: Any) -> Any:  # noqa: ANN401 - pydantic hook: any input
        """Check the extension attributes: names CloudEvents allows, few enough, typed values.

        Each error names its attribute (``attribute`` in its context); a
        ``null`` extension is an absent one (as for the optional attributes).
        """
        if not isinstance(raw, dict):
            return raw
        # the attribute names, not ``cls.model_fields``: a property that costs a
        # microsecond a read, which was most of the time an envelope took to validate
        names = [k for k in raw if k not in _ATTRIBUTES]
        if not names:
            return raw
        for name in names:
            if name == "data_base64":
                raise PydanticCustomError(
                    "extension_reserved",
                    "binary data is refused: an event's data is a JSON object",
                    {"attribute": name},
                )
            if not isinstance(name, str) or not _EXTENSION_NAME_RE.fullmatch(name):
                raise PydanticCustomError(
                    "extension_name",
                    "invalid extension attribute name '{name}': use 1 to 20 lower-case"
                    " letters a-z or digits 0-9",
                    {"name": str(name)[:64], "attribute": "event"},
                )
        present = [name for name in names if raw[name] is not None]
        if len(present) > MAX_EXTENSIONS:
            raise PydanticCustomError(
                "extension_count",
                "{count} extension attributes, at most {limit} are kept (the first one"
                " too many: '{name}')",
                {"count": len(present), "limit": MAX_EXTENSIONS, "name": present[MAX_EXTENSIONS]},
            )
        return {
            k: v if k in _ATTRIBUTES else _extension_value(k, v)
            for k, v in raw.items()
            if v is not None or k in _ATTRIBUTES
        }

    @property
    def extensions(self) -> dict[str, bool | int | str]:
        """The extension attributes riskpipe keeps without interpreting them, by name."""
        return dict(self.__pydantic_extra__ or {})

    @property
    def msg_id(self) -> str:
        """The ``Nats-Msg-Id`` of this event (see :func:`msg_id_for`)."""
        return msg_id_for(self.source, self.id)

    def to_json_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict, without unset optional attributes."""
        return self.model_dump(mode="json", exclude_none=True)


_ATTRIBUTES: Final = frozenset(CloudEvent.model_fields)
"""The envelope's own attribute names: any other name is an extension attribute."""
