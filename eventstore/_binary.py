"""The NATS protocol binding's binary content mode: an event as ``ce-`` headers and its data.

A raw NATS producer may publish an event with its context attributes as
``ce-<name>`` headers (``ce-id``, ``ce-source``, ``ce-tenant``, an extension
as ``ce-partitionkey``) and its data alone as the payload. Such a message is
stored as it arrived; whoever reads it turns it back into the structured
attributes here, the same way every time, from the stored header block and
payload. So a re-derivation (the audit replay) reads exactly the event the
worker assessed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import unquote_to_bytes

from eventstore._codec import decode_json
from eventstore.errors import InvalidUTF8Error, SchemaViolationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CE_PREFIX", "BinaryHeaders", "binary_fields", "binary_headers"]

CE_PREFIX: Final = "ce-"
BINARY: Final = "binary mode"
"""What a binary-mode error is about, before its type is known."""

BinaryHeaders: TypeAlias = "bytes | Mapping[str, str] | None"
"""A message's headers: its raw ``NATS/1.0`` block, or their parsed view when no block is kept."""

_CE_LINE = re.compile(rb"(?im)^ce-")
_STRUCTURED = "application/cloudevents"
_RESERVED = {
    "data": "the data is the message payload, not a header",
    "data_base64": "the data is the message payload, not a header",
}
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"$', re.DOTALL)


def binary_headers(headers: BinaryHeaders) -> dict[str, str] | None:
    """The binding's headers of a binary-mode message, lower-cased names; ``None``: not one.

    Binary mode is a message with any ``ce-`` header (names are
    case-insensitive), unless its ``Content-Type`` names the structured mode
    (``application/cloudevents...``). The returned mapping has the
    ``ce-`` headers and ``content-type``, values as sent (not yet decoded).

    Raises:
        SchemaViolationError: one of those headers is given twice.
    """
    if not headers:
        return None
    if isinstance(headers, bytes):
        if _CE_LINE.search(headers) is None:
            return None
        pairs = _lines(headers)
    else:
        pairs = list(headers.items())
    found: dict[str, str] = {}
    for name, value in pairs:
        key = name.strip().lower()
        if not key.startswith(CE_PREFIX) and key != "content-type":
            continue
        if key in found:
            raise SchemaViolationError(BINARY, [f"{key}: header given more than once"])
        found[key] = value.strip()
    if not any(key.startswith(CE_PREFIX) for key in found):
        return None
    if found.get("content-type", "").lower().startswith(_STRUCTURED):
        return None
    return found


def binary_fields(
    found: Mapping[str, str], payload: bytes, *, max_bytes: int, max_depth: int
) -> dict[str, Any]:
    """The structured attributes of a binary-mode message: its ``ce-`` headers and its data.

    Header values are decoded as the binding says (a double-quoted value
    unquoted, then one round of percent-decoding, into UTF-8); the data is
    the payload, decoded as strictly as a structured event (an empty payload
    is no data); ``Content-Type`` gives ``datacontenttype``.

    Raises:
        SchemaViolationError: a reserved name, or a content type given twice differently.
        InvalidUTF8Error: a header value is not UTF-8 once percent-decoded.
        DecodeError: the payload is not a JSON value (any subclass).
    """
    fields: dict[str, Any] = {}
    for key, value in found.items():
        if key == "content-type":
            continue
        name = key.removeprefix(CE_PREFIX)
        if name in _RESERVED:
            raise SchemaViolationError(BINARY, [f"{key}: {_RESERVED[name]}"])
        fields[name] = _decoded(key, value)
    if (content_type := found.get("content-type")) is not None:
        given = fields.setdefault("datacontenttype", _decoded("content-type", content_type))
        if given != _decoded("content-type", content_type):
            raise SchemaViolationError(
                BINARY, ["ce-datacontenttype: differs from the Content-Type header"]
            )
    if payload:
        fields["data"] = decode_json(payload, max_bytes=max_bytes, max_depth=max_depth)
    return fields


def _lines(block: bytes) -> list[tuple[str, str]]:
    """The header lines of a raw block as (name, value), its status line left out."""
    out = []
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.decode("latin-1"), value.decode("latin-1")))
    return out


def _decoded(key: str, value: str) -> str:
    """A binding header value as the attribute's string: unquoted, then percent-decoded.

    Raises:
        InvalidUTF8Error: the value is not ASCII, or not UTF-8 once percent-decoded.
    """
    if (quoted := _QUOTED.match(value)) is not None:
        value = re.sub(r"\\(.)", r"\1", quoted.group(1), flags=re.DOTALL)
    if not value.isascii():
        raise InvalidUTF8Error(f"{key}: header values are ASCII; percent-encode other characters")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8Error(
            f"{key}: not UTF-8 once percent-decoded: {exc.reason} at byte {exc.start}"
        ) from exc
