"""Risk levels and the hysteresis rule that moves an entity between them."""

from __future__ import annotations

from bisect import bisect_right
from enum import StrEnum

__all__ = ["LEVELS", "RiskLevel", "level_between", "resolve_level"]


class RiskLevel(StrEnum):
    """How much risk an entity carries, from least to most."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


LEVELS: tuple[RiskLevel, ...] = tuple(RiskLevel)
_RANK = {level: rank for rank, level in enumerate(LEVELS)}


def resolve_level(
    previous: RiskLevel, score: float, thresholds: tuple[float, ...], margin: float
) -> RiskLevel:
    """The level for ``score`` given the ``previous`` level.

    A level is entered when the score reaches its threshold, but left only when
    the score falls below that threshold minus ``margin``, so a score hovering
    around a boundary does not flap between two levels.

    Args:
        previous: the entity's level before this score.
        score: the new score, in [0, 1].
        thresholds: the entry thresholds of medium, high and critical, ascending.
        margin: how far below a threshold the score must fall to leave the level.
    """
    falling = tuple(threshold - margin for threshold in thresholds)
    return level_between(previous, score, thresholds, falling)


def level_between(
    previous: RiskLevel, score: float, rising: tuple[float, ...], falling: tuple[float, ...]
) -> RiskLevel:
    """:func:`resolve_level` with the falling thresholds (threshold minus margin) precomputed."""
    entered = bisect_right(rising, score)
    held = _RANK[previous]
    if entered > held:
        return LEVELS[entered]
    return LEVELS[min(held, bisect_right(falling, score))]
