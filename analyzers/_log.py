"""Offline evidence logs: a JSON array, ``{"evidence": [...]}``, or JSON lines.

Each entry is an evidence object (the evidence data with a required
``observed_at`` and optional ``source``, ``id``, ``recorded_at``) or an
evidence event in the CloudEvents form ``riskpipe publish`` reads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from analyzers._entries import evidence_of
from analyzers._nesting import nesting_depth
from analyzers._problems import describe
from analyzers.errors import InvalidEvidenceError

if TYPE_CHECKING:
    from analyzers._evidence import Evidence

__all__ = ["MAX_LOG_BYTES", "MAX_LOG_DEPTH", "MAX_LOG_ENTRIES", "parse_evidence_log"]

MAX_LOG_BYTES = 16 * 1024 * 1024
MAX_LOG_ENTRIES = 100_000
MAX_LOG_DEPTH = 16
"""How deep a log's JSON may nest: a valid log nests 4 levels at most
(``{"evidence": [{"data": {"attributes": ...}}]}``); the event store's default limit."""
_MAX_PROBLEMS = 10
_SHAPE = 'expected a JSON array of evidence objects, {"evidence": [...]}, or JSON lines'


def parse_evidence_log(text: str) -> list[Evidence]:
    """Parse and validate an evidence log, in log order.

    Problems are located as ``evidence[<index>]`` in a JSON document and as
    ``line <n>`` in JSON lines.

    Raises:
        InvalidEvidenceError: the log is empty, malformed, or an entry is invalid.
    """
    if len(text) > MAX_LOG_BYTES:
        raise _invalid(f"the evidence log is over {MAX_LOG_BYTES} bytes")
    items = _items(text.strip())
    if not items:
        raise _invalid("the evidence log is empty")
    if len(items) > MAX_LOG_ENTRIES:
        raise _invalid(f"the evidence log has {len(items)} entries, the limit is {MAX_LOG_ENTRIES}")
    return _validated(items)


def _items(text: str) -> list[tuple[str, Any]]:
    if not text:
        return []
    try:
        value = _decode(text)
    except ValueError as exc:
        if text.startswith("{") and "\n" in text:
            return _lines(text)
        raise _invalid(f"malformed JSON: {exc}") from exc
    if isinstance(value, list):
        return [(f"evidence[{index}]", item) for index, item in enumerate(value)]
    if isinstance(value, dict) and "evidence" in value:
        return _wrapped(value)
    if isinstance(value, dict):
        return [("line 1", value)]
    raise _invalid(f"{_SHAPE}, got {_json_type(value)}")


def _wrapped(value: dict[str, Any]) -> list[tuple[str, Any]]:
    extra = sorted(set(value) - {"evidence"})
    if extra:
        raise _invalid(f"unexpected keys {', '.join(extra)}: {_SHAPE}")
    items = value["evidence"]
    if not isinstance(items, list):
        raise _invalid(f'"evidence" must be a JSON array, got {_json_type(items)}')
    return [(f"evidence[{index}]", item) for index, item in enumerate(items)]


def _lines(text: str) -> list[tuple[str, Any]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {number}", _decode(line)))
        except ValueError as exc:
            raise _invalid(f"line {number}: malformed JSON: {exc}") from exc
    return items


def _validated(items: list[tuple[str, Any]]) -> list[Evidence]:
    evidence: list[Evidence] = []
    entities: set[str] = set()
    problems: list[str] = []
    for index, (where, item) in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an evidence object, got {_json_type(item)}")
            continue
        try:
            found, entity = evidence_of(item, index)
        except ValidationError as exc:
            problems.extend(describe(exc, where))
        except InvalidEvidenceError as exc:
            problems.extend(f"{where}: {problem}" for problem in exc.problems)
        else:
            evidence.append(found)
            entities.update([entity] if entity else [])
    if len(entities) > 1:
        shown = ", ".join(sorted(entities)[:3])
        problems.append(f"the log is about {len(entities)} entities ({shown}): analyse one")
    if problems:
        raise InvalidEvidenceError(problems[:_MAX_PROBLEMS])
    return evidence


def _decode(text: str) -> Any:  # noqa: ANN401 - JSON is Any until validated
    """Strict JSON: no NaN or Infinity, no duplicate keys, bounded nesting.

    Raises:
        ValueError: the text is not strict JSON.
    """
    # Counted before parsing, so the limit is the same on every interpreter.
    openers = text.count("[") + text.count("{")  # fewer than the limit cannot nest past it
    if openers > MAX_LOG_DEPTH and (depth := nesting_depth(text)) > MAX_LOG_DEPTH:
        raise ValueError(f"the JSON nests too deeply: {depth} levels, the limit is {MAX_LOG_DEPTH}")
    return _DECODER.decode(text)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique, parse_constant=_no_constant)


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _invalid(problem: str) -> InvalidEvidenceError:
    return InvalidEvidenceError([problem])
