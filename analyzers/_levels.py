"""Risk levels and the hysteresis rule that moves an entity between them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LEVELS", "RiskLevel", "resolve_level"]


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
    rising = _rank_at(score, thresholds, 0.0)
    held = _RANK[previous]
    if rising > held:
        return LEVELS[rising]
    return LEVELS[min(held, _rank_at(score, thresholds, margin))]


def _rank_at(score: float, thresholds: tuple[float, ...], margin: float) -> int:
    rank = 0
    for index, threshold in enumerate(thresholds, start=1):
        if score >= threshold - margin:
            rank = index
    return rank
