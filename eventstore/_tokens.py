"""Validation of the tokens that become NATS subject parts and header values."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["EventId", "SourceRef", "Token", "validate_token"]

# A subject token: printable ASCII without the NATS separators and wildcards.
_TOKEN = re.compile(r"[A-Za-z0-9_\-:@+=~%!#$&'()\[\],;?^`{|}]{1,128}")
# CloudEvents `id` and `source` end up in the Nats-Msg-Id header: no whitespace or
# control characters (a CR/LF would split the header block).
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def validate_token(value: str, *, what: str = "token") -> str:
    """Return ``value`` when it is a valid subject token.

    Raises:
        ValueError: when it is empty, too long, or holds `.`, `*`, `>`,
            whitespace or a non-ASCII character.
    """
    if not _TOKEN.fullmatch(value):
        msg = (
            f"invalid {what} {value!r}: use 1 to 128 ASCII letters, digits or"
            " punctuation, without '.', '*', '>' or whitespace"
        )
        raise ValueError(msg)
    return value


def _header_safe(limit: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if len(value) > limit or not _HEADER_SAFE.fullmatch(value):
            msg = (
                f"invalid {what} {value!r}: use 1 to {limit} printable ASCII"
                " characters without whitespace"
            )
            raise ValueError(msg)
        return value

    return AfterValidator(check)


Token = Annotated[str, AfterValidator(validate_token)]
EventId = Annotated[str, _header_safe(128, "id")]
SourceRef = Annotated[str, _header_safe(256, "source")]
