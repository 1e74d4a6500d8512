"""Validation of the tokens that become NATS subject parts and header values.

The patterns are checked by pydantic's Rust regex engine when a model is
validated (no Python call per field); :data:`PATTERN_HINTS` turns a mismatch
into a sentence a producer can act on.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AwareDatetime, StringConstraints
from pydantic_core import PydanticCustomError, core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

__all__ = [
    "EDGE_OFFSET",
    "MAX_FRACTION_DIGITS",
    "PATTERN_HINTS",
    "RFC3339",
    "SUBJECT_TOKEN",
    "EventId",
    "SourceRef",
    "Timestamp",
    "Token",
    "check_edge_offset",
    "check_precision",
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

SUBJECT_TOKEN = _SUBJECT_PART
"""A tenant's or an entity's id as the store takes it: one subject token (for other validators)."""

# RFC 3339 `date-time` as JSON Schema validators check it: upper-case `T` and `Z`,
# seconds, at most microseconds, a timezone, no year 0000. Written for pydantic's
# Rust engine and for ECMA-262 alike (no look-around, `[0-9]` rather than `\d`).
RFC3339 = (
    r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])"
    r"-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""The time format of an event: what ``riskpipe schema`` publishes for ``time``."""
_RFC3339_HINT = "must be a valid RFC 3339 date-time with a timezone, e.g. 2026-11-29T08:00:00Z"
_EDGE_DAYS = (date(1, 1, 1), date(9999, 12, 31))
EDGE_OFFSET = (
    r"^(?:0001-01-01|9999-12-31)T[0-9:.]+[+-]"
    r"(?:(?:0[1-9]|1[0-9]|2[0-3]):[0-5][0-9]|00:(?:0[1-9]|[1-5][0-9]))$"
)
"""A time on the first or last day a ``datetime`` holds, with an offset other than zero.

Such a time may not exist in UTC (``0001-01-01T00:00:00+05:00`` is in year 0),
so it is refused: on those two days a time is given in UTC.
"""
_FRACTION = re.compile(r"T[^.]*\.([0-9]*)")
MAX_FRACTION_DIGITS = 6
"""Times are kept to the microsecond: more digits would be dropped silently, so are refused."""


def check_precision(value: Any) -> Any:  # noqa: ANN401 - pydantic hook: any input
    """Refuse a time string with more fractional digits than a microsecond.

    Raises:
        PydanticCustomError: the string has more than 6 fractional digits.
    """
    if isinstance(value, str) and (found := _FRACTION.search(value)) is not None:
        digits = len(found.group(1))
        if digits > MAX_FRACTION_DIGITS:
            raise PydanticCustomError(
                "datetime_precision",
                "{value} has {digits} fractional digits: times are kept to the microsecond"
                " (at most 6 digits), so round or cut it",
                {"value": value, "digits": digits},
            )
    return value


def check_edge_offset(value: datetime) -> datetime:
    """Refuse a time on 0001-01-01 or 9999-12-31 with an offset: it may not exist in UTC.

    Raises:
        PydanticCustomError: it is such a time.
    """
    if value.date() in _EDGE_DAYS and value.utcoffset():
        raise PydanticCustomError(
            "datetime_utc_range",
            "on 0001-01-01 and 9999-12-31 a time must be given in UTC (Z): with an offset"
            " it may lie outside the years a time can hold",
        )
    return value


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
        parsed = core_schema.union_schema(
            [
                core_schema.chain_schema([core_schema.is_instance_schema(datetime), aware]),
                core_schema.chain_schema([core_schema.str_schema(pattern=RFC3339), aware]),
            ],
            custom_error_type="datetime_rfc3339",
            custom_error_message=_RFC3339_HINT,
        )
        return core_schema.no_info_before_validator_function(
            check_precision,
            core_schema.no_info_after_validator_function(check_edge_offset, parsed),
            serialization=aware.get("serialization"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "date-time",
            "pattern": RFC3339,
            "not": {"pattern": EDGE_OFFSET},
        }


Timestamp = Annotated[AwareDatetime, _Rfc3339()]
"""An aware time that JSON must give in RFC 3339 form, to the microsecond at most.

It keeps the offset it was given (a consumer may check more against it); the
store writes it in UTC (see :func:`~eventstore.encode_event`).
"""


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
