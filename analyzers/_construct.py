"""Building models from values the analyzer computed itself, without re-validating them."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["trusted"]

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(model: type[M], values: dict[str, Any]) -> M:
    """An instance of ``model`` holding ``values`` (every field) as given.

    This is :meth:`pydantic.BaseModel.model_construct` for the case where every
    field is supplied with a value of the right type: scoring computes and
    type-checks these values itself, and validating them again would cost more
    than the scoring. Tests pin that the instances equal validated ones.
    """
    instance = model.__new__(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(values))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
