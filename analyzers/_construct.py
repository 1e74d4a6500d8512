"""Building models from values the analyzer computed itself, without re-validating them."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["trusted"]

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def trusted(model: type[M], values: Mapping[str, object]) -> M:
    """An instance of frozen ``model`` holding ``values`` (a dict of every field) as given.

    This is :meth:`pydantic.BaseModel.model_construct` for the case where every
    field is supplied with a value of the right type: scoring computes and
    type-checks these values itself, and validating them again would cost more
    than the scoring (the risk projection builds its events the same way).
    Tests pin that the instances equal validated ones.

    All instances of a model share one fields-set: every field is set, and a
    frozen model never adds to it (``model_copy`` copies it before updating).
    """
    fields_set = _FIELD_SETS.get(model)
    if fields_set is None:
        fields_set = _FIELD_SETS.setdefault(model, set(model.model_fields))
    instance = model.__new__(model)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", fields_set)
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
