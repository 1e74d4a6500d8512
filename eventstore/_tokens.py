"""Validation of the tokens that become NATS subject parts and header values.

The patterns are checked by pydantic's Rust regex engine when a model is
validated (no Python call per field); :data:`PATTERN_HINTS` turns a mismatch
into a sentence a producer can act on.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

__all__ = ["PATTERN_HINTS", "EventId", "SourceRef", "Token", "validate_token"]

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
