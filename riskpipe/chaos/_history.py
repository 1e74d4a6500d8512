"""The history of a chaos run: every operation, fault and observation, as JSON lines.

A line is ``{"time", "process", "op", "value", "type"}``. ``type`` says what
the line is: ``invoke`` (an operation began), ``ok`` (it took effect), ``fail``
(it certainly did not) or ``info`` (nobody knows: an append whose reply timed
out may or may not be stored, so the checker assumes neither). Faults and their
heals, and the harness's own observations (checkpoint samples, the recovery,
redelivery counts), are ``info`` lines of their own ops.

``time`` is the wall clock in seconds since the epoch, the same clock the
server stamps stored messages with on this machine: the checkpoint invariant
compares the two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal, Self, cast, get_args

import orjson

from riskpipe.chaos.errors import HistoryError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = [
    "APPEND",
    "CHECKPOINT",
    "FAULT",
    "HEAL",
    "PROBE",
    "RECOVERED",
    "REDELIVERY",
    "Expect",
    "HistoryWriter",
    "Op",
    "OpType",
    "parse_history",
    "read_history",
]

OpType = Literal["invoke", "ok", "fail", "info"]
_OP_TYPES = frozenset(get_args(OpType))

Expect = Literal["assess", "dead-letter"]
"""What should become of an appended evidence: an assessment, or one dead letter."""

APPEND = "append"
"""An evidence append. ``invoke``: ``{msg_id, tenant, entity, expect, failures?}``;
``ok``: ``{msg_id, sequence, duplicate}``; ``fail``/``info``: ``{msg_id, error}``."""
FAULT = "fault"
"""A fault injected (``info``): ``{fault, target}``."""
HEAL = "heal"
"""A fault undone (``info``): ``{fault, target}``."""
CHECKPOINT = "checkpoint"
"""A checkpoint read back (``info``): ``{projection, partition, position}``."""
RECOVERED = "recovered"
"""The pipeline quiet again after the last heal (``info``): ``{seconds, replicas_agree}``."""
REDELIVERY = "redelivery"
"""The consumers' redelivery counts at the end (``info``): ``{projection, redelivered}``."""
PROBE = "probe"
"""A security probe: ``invoke`` ``{probe}``; ``ok`` when refused as it must be, ``fail`` if
it took effect."""


@dataclass(frozen=True, slots=True)
class Op:
    """One line of the history."""

    time: float
    process: str
    op: str
    type: OpType
    value: dict[str, Any] = field(default_factory=dict)
    line: int = 0
    """Its line number in the history file (1-based; 0: not read from a file)."""

    def to_json(self) -> bytes:
        """The line as written: without its line number."""
        return orjson.dumps(
            {
                "time": self.time,
                "process": self.process,
                "op": self.op,
                "value": self.value,
                "type": self.type,
            }
        )

    def __str__(self) -> str:
        where = f"{self.line}: " if self.line else ""
        return f"{where}{self.to_json().decode()}"


class HistoryWriter:
    """Appends ops to a JSON lines file as they happen, flushed line by line.

    Flushed per line, so a harness that dies mid-run leaves every op it
    recorded; the ops are also kept in memory (``ops``) for the checker.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.ops: list[Op] = []
        self._clock = clock
        self._file: IO[bytes] = path.open("ab")

    def record(self, process: str, op: str, type_: OpType, **value: object) -> Op:
        """Write one op, stamped now; return it.

        Raises:
            HistoryError: ``type_`` is not an op type, or ``value`` is not JSON.
        """
        if type_ not in _OP_TYPES:
            raise HistoryError(f"op type {type_!r} is not one of {sorted(_OP_TYPES)}")
        entry = Op(self._clock(), process, op, type_, dict(value), len(self.ops) + 1)
        try:
            line = entry.to_json()
        except TypeError as exc:
            raise HistoryError(f"op {op!r} of {process!r}: value is not JSON: {exc}") from exc
        self._file.write(line + b"\n")
        self._file.flush()
        self.ops.append(entry)
        return entry

    def close(self) -> None:
        """Close the file (the ops stay in memory)."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_history(path: Path) -> list[Op]:
    """The ops of a history file, in order.

    Raises:
        HistoryError: a line is not a history op (its number and why).
    """
    with path.open("rb") as lines:
        return parse_history(lines)


def parse_history(lines: Iterable[bytes]) -> list[Op]:
    """The ops of history lines (blank lines are skipped).

    Raises:
        HistoryError: a line is not a history op (its number and why).
    """
    ops: list[Op] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HistoryError(f"history line {number}: not JSON: {exc}") from exc
        ops.append(_op(line, number))
    return ops


def _op(line: object, number: int) -> Op:
    if not isinstance(line, dict):
        raise HistoryError(f"history line {number}: not a JSON object")
    moment, process, op = line.get("time"), line.get("process"), line.get("op")
    type_, value = line.get("type"), line.get("value", {})
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        raise HistoryError(f"history line {number}: 'time' must be a number")
    if not isinstance(process, str) or not isinstance(op, str):
        raise HistoryError(f"history line {number}: 'process' and 'op' must be strings")
    if type_ not in _OP_TYPES:
        raise HistoryError(f"history line {number}: 'type' must be one of {sorted(_OP_TYPES)}")
    if not isinstance(value, dict):
        raise HistoryError(f"history line {number}: 'value' must be an object")
    return Op(float(moment), process, op, cast("OpType", type_), value, number)
