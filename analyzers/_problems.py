"""Readable one-line descriptions of pydantic validation errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["describe"]

_VALUE_ERROR = "Value error, "


def describe(exc: ValidationError, prefix: str = "", whole: str = "value") -> list[str]:
    """One ``where: what`` line per problem in ``exc``, each located under ``prefix``.

    Args:
        exc: the validation error.
        prefix: where the validated value sits, e.g. ``evidence[3]``.
        whole: what to call the value itself when a problem concerns all of it.
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = prefix + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        )
        message = error["msg"].removeprefix(_VALUE_ERROR)
        lines.append(f"{where.lstrip('.') or whole}: {message}")
    return lines
