"""Canonical JSON of a model: the one text form that equal values share."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["canonical_json", "canonical_text"]


def canonical_json(model: BaseModel) -> str:
    """Compact JSON with sorted keys and no NaN: same values, same text."""
    return canonical_text(model.model_dump(mode="json"))


def canonical_text(value: object) -> str:
    """:func:`canonical_json` of a JSON value."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
