"""Field-by-field comparison of JSON values, as strict as their canonical JSON text.

Two values are the same only when their canonical JSON would be the same:
``1`` and ``1.0`` differ, and so do ``0.0`` and ``-0.0``, although Python
calls them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["ABSENT", "FieldDifference", "first_difference"]

ABSENT: Final = "<absent>"
"""How a value missing on one side is shown."""


@dataclass(frozen=True, slots=True)
class FieldDifference:
    """The first place two records differ: the field path and both values."""

    path: str
    recorded: Any
    rederived: Any

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"path": self.path, "recorded": self.recorded, "rederived": self.rederived}

    def describe(self) -> str:
        """One line: ``path: recorded <value>, re-derived <value>``."""
        return f"{self.path}: recorded {_show(self.recorded)}, re-derived {_show(self.rederived)}"


def first_difference(recorded: Any, rederived: Any, path: str = "") -> FieldDifference | None:  # noqa: ANN401 - JSON values
    """The first field (in the recorded value's field order) where the two JSON values differ."""
    if isinstance(recorded, dict) and isinstance(rederived, dict):
        return _first_in_dicts(recorded, rederived, path)
    if isinstance(recorded, list) and isinstance(rederived, list):
        return _first_in_lists(recorded, rederived, path)
    if _same(recorded, rederived):
        return None
    return FieldDifference(path or "<root>", recorded, rederived)


def _first_in_dicts(
    recorded: dict[str, Any], rederived: dict[str, Any], path: str
) -> FieldDifference | None:
    for key in [*recorded, *(k for k in rederived if k not in recorded)]:
        where = f"{path}.{key}" if path else key
        if key not in recorded or key not in rederived:
            return FieldDifference(where, recorded.get(key, ABSENT), rederived.get(key, ABSENT))
        found = first_difference(recorded[key], rederived[key], where)
        if found is not None:
            return found
    return None


def _first_in_lists(recorded: list[Any], rederived: list[Any], path: str) -> FieldDifference | None:
    for index in range(max(len(recorded), len(rederived))):
        where = f"{path}[{index}]"
        if index >= len(recorded) or index >= len(rederived):
            mine = recorded[index] if index < len(recorded) else ABSENT
            theirs = rederived[index] if index < len(rederived) else ABSENT
            return FieldDifference(where, mine, theirs)
        found = first_difference(recorded[index], rederived[index], where)
        if found is not None:
            return found
    return None


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, float) or math.copysign(1.0, a) == math.copysign(1.0, b)  # type: ignore[arg-type]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."  # noqa: PLR2004 - one readable line
