"""Strict JSON decoding and canonical encoding of event payloads.

The decoder refuses anything a lenient parser would half-accept: invalid
UTF-8, NaN/Infinity, duplicate object keys, excessive nesting and oversized
payloads. The encoder writes compact canonical JSON (sorted keys), so the same
event always has the same bytes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC
from itertools import accumulate
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

if TYPE_CHECKING:
    from pydantic import BaseModel

    from eventstore._envelope import CloudEvent

from eventstore.errors import (
    InvalidUTF8Error,
    MalformedJSONError,
    NestingTooDeepError,
    PayloadTooLargeError,
)

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "decode_json",
    "encode_event",
    "encode_json",
    "nesting_depth",
]

DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 16


class _DuplicateKeyError(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, parse_constant=_reject_constant)


# A string, or an unterminated one running to the end of the payload: skipped
# whole, so brackets inside strings do not count and the scan stays linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(payload: bytes) -> int:
    """How deep objects and arrays nest in ``payload``, read from its bytes without recursion.

    Run before any parser sees the payload, so the limit is this count alone,
    the same on every interpreter: no parser ever recurses past it, whatever
    the interpreter's own recursion limits (which differ between Python
    versions).
    """
    brackets = _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def decode_json(
    payload: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:  # noqa: ANN401 - JSON is Any by nature; callers validate with a schema
    """Decode ``payload`` as strict JSON.

    Raises:
        PayloadTooLargeError: the payload is over ``max_bytes``.
        InvalidUTF8Error: the payload is not UTF-8.
        MalformedJSONError: bad syntax, NaN/Infinity or a duplicate key.
        NestingTooDeepError: objects and arrays nest deeper than ``max_depth``.
    """
    if len(payload) > max_bytes:
        raise PayloadTooLargeError(len(payload), max_bytes)
    # Cheap guard first: fewer openers than the limit cannot nest past it.
    openers = payload.count(b"{") + payload.count(b"[")
    if openers > max_depth and (depth := nesting_depth(payload)) > max_depth:
        raise NestingTooDeepError(depth, max_depth)
    value = _canonical(payload)
    if value is _NOT_CANONICAL:
        value = _strict(payload)
    return value


_NOT_CANONICAL: Any = object()


def _canonical(payload: bytes) -> Any:  # noqa: ANN401 - JSON is Any by nature
    """``payload`` decoded by orjson if it is canonical JSON, else ``_NOT_CANONICAL``.

    What the store writes is canonical (compact, sorted keys), and orjson reads
    it several times faster than the strict decoder. A payload that orjson
    writes back byte for byte has no duplicate keys, no NaN and valid UTF-8,
    and its value is exactly what the strict decoder returns; anything else
    (including what orjson refuses) goes to the strict decoder, for its error.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _NOT_CANONICAL
    try:
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == payload
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return _NOT_CANONICAL
    return value if canonical else _NOT_CANONICAL


def _strict(payload: bytes) -> Any:  # noqa: ANN401 - JSON is Any by nature
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUTF8Error(
            f"payload is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from exc
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedJSONError(
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except ValueError as exc:
        raise MalformedJSONError(f"malformed JSON: {exc}") from exc
    return value


def encode_json(value: object) -> bytes:
    """Encode ``value`` as compact JSON with sorted keys.

    Raises:
        MalformedJSONError: the value holds something JSON cannot represent.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise MalformedJSONError(f"cannot encode as JSON: {exc}") from exc


_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SORT_KEYS
# Enum dict keys (e.g. a state's masses by severity) need OPT_NON_STR_KEYS, which
# doubles the cost of writing everything else: data models are learned to need
# it on their first event that does.
_NON_STR_KEYS: set[type[BaseModel]] = set()


def encode_event(event: CloudEvent, data: BaseModel | None) -> bytes:
    """The canonical bytes of ``event`` with ``data`` (its validated data model).

    Canonical: compact, sorted keys, UTC times with ``Z``, unset optional
    attributes left out, so equal events have equal bytes. Extension
    attributes are written beside the others, sorted with them, as validated.
    The envelope's ``time`` is converted to UTC here, whatever offset it was
    given with (``Timestamp`` keeps a time UTC can hold); a data model writes
    its own times in UTC.
    """
    doc = _envelope_doc(event)
    if data is not None:
        # python mode: orjson writes datetimes, enums and tuples itself, faster than
        # pydantic; the serializer itself, without model_dump's argument handling
        doc["data"] = data.__pydantic_serializer__.to_python(
            data, exclude_none=True, exclude_unset=True
        )
    if data is None or type(data) not in _NON_STR_KEYS:
        try:
            return orjson.dumps(doc, option=_OPTIONS)
        except TypeError:
            if data is not None:
                _NON_STR_KEYS.add(type(data))
    try:
        return orjson.dumps(doc, option=_OPTIONS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise MalformedJSONError(f"cannot encode as JSON: {exc}") from exc


def _envelope_doc(event: CloudEvent) -> dict[str, Any]:
    """The envelope's attributes as :func:`encode_event` writes them, unset ones left out."""
    time = event.time
    if time.utcoffset():  # a zero offset is written as Z already
        time = time.astimezone(UTC)
    doc: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "tenant": event.tenant,
        "time": time,
        "datacontenttype": event.datacontenttype,
    }
    if event.correlationid is not None:
        doc["correlationid"] = event.correlationid
    if event.causationid is not None:
        doc["causationid"] = event.causationid
    if event.dataschema is not None:
        doc["dataschema"] = event.dataschema
    if extensions := event.__pydantic_extra__:  # names never collide with the attributes'
        doc.update(extensions)
    return doc
