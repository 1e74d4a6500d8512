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
        path = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        )
        message = error["msg"].removeprefix(_VALUE_ERROR)
        lines.append(f"{_where(prefix, path) or whole}: {message}")
    return lines


def _where(prefix: str, path: str) -> str:
    """``evidence[2]`` + ``.severity`` reads as a path; ``line 3`` + ``.data`` as a label."""
    if not prefix or not path or prefix.endswith("]"):
        return (prefix + path).lstrip(".")
    return f"{prefix}: {path.lstrip('.')}"
