"""Validation of the tokens that become NATS subject parts and header values.

The patterns are checked by pydantic's Rust regex engine when a model is
validated (no Python call per field); :data:`PATTERN_HINTS` turns a mismatch
into a sentence a producer can act on.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AwareDatetime, StringConstraints
from pydantic_core import core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

__all__ = [
    "PATTERN_HINTS",
    "RFC3339",
    "EventId",
    "SourceRef",
    "Timestamp",
    "Token",
    "validate_token",
]

# A subject token: printable ASCII without the NATS separators and wildcards.
_SUBJECT_PART = r"^[A-Za-z0-9_\-:@+=~%!#$&'()\[\],;?^`{|}]{1,128}$"
# CloudEvents `id` and `source` end up in the Nats-Msg-Id header: no whitespace or
# control characters (a CR/LF would split the header block).
_ID = r"^[\x21-\x7e]{1,128}$"
_SOURCE = r"^[\x21-\x7e]{1,256}$"

_SUBJECT_PART_HINT = (
    "use 1 to 128 ASCII letters, digits or punctuation, without '.', '*', '>' or whitespace"
)
PATTERN_HINTS = {
    _SUBJECT_PART: _SUBJECT_PART_HINT,
    _ID: "use 1 to 128 printable ASCII characters without whitespace",
    _SOURCE: "use 1 to 256 printable ASCII characters without whitespace",
}
"""What each pattern asks for, in words, by pattern."""

_SUBJECT_PART_RE = re.compile(_SUBJECT_PART)

# RFC 3339 `date-time` as JSON Schema validators check it: upper-case `T` and `Z`,
# seconds, a timezone, no year 0000. Written for pydantic's Rust engine and for
# ECMA-262 alike (no look-around, `[0-9]` rather than the Unicode-wide `\d`).
RFC3339 = (
    r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])"
    r"-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""The time format of an event: what ``riskpipe schema`` publishes for ``time``."""
_RFC3339_HINT = "must be a valid RFC 3339 date-time with a timezone, e.g. 2026-11-29T08:00:00Z"


class _Rfc3339:
    """Accept a ``datetime``, or a string in :data:`RFC3339` form, inside pydantic-core.

    Not a number and not another of pydantic's lax formats: what a producer may
    send is what the published JSON Schema says, no more.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls,
        source: Any,  # noqa: ANN401 - pydantic hook
        handler: GetCoreSchemaHandler,
    ) -> core_schema.CoreSchema:
        aware = handler(source)
        return core_schema.union_schema(
            [
                core_schema.chain_schema([core_schema.is_instance_schema(datetime), aware]),
                core_schema.chain_schema([core_schema.str_schema(pattern=RFC3339), aware]),
            ],
            custom_error_type="datetime_rfc3339",
            custom_error_message=_RFC3339_HINT,
            serialization=aware.get("serialization"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time", "pattern": RFC3339}


Timestamp = Annotated[AwareDatetime, _Rfc3339()]
"""An aware time that JSON must give in RFC 3339 form."""


def validate_token(value: str, *, what: str = "token") -> str:
    """Return ``value`` when it is a valid subject token.

    Raises:
        ValueError: when it is empty, too long, or holds `.`, `*`, `>`,
            whitespace or a non-ASCII character.
    """
    if not _SUBJECT_PART_RE.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: {_SUBJECT_PART_HINT}")
    return value


Token = Annotated[str, StringConstraints(pattern=_SUBJECT_PART)]
EventId = Annotated[str, StringConstraints(pattern=_ID)]
SourceRef = Annotated[str, StringConstraints(pattern=_SOURCE)]
