"""Decisions people made about an entity, as the analyzer applies them: named contributions.

A ``confirmed`` decision keeps the entity at no less than the decided level
for a while: when the score is below that level's threshold, the difference
is added as ``review:confirmed``. A ``false_positive`` dampens the patterns
that raised the case: their evidence contributions are kept as they were, and
what the dampening takes away is ``review:false_positive`` (negative). The
contributions still sum to the score, so every point is explained.

The signal is recorded in the assessment, as an enrichment signal is: a
replay applies the same decisions, whatever the review stream holds now.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analyzers._levels import LEVELS, RiskLevel

__all__ = ["CONFIRMED", "FALSE_POSITIVE", "ReviewSignal", "reviewed"]

CONFIRMED = "review:confirmed"
FALSE_POSITIVE = "review:false_positive"
_EVIDENCE = "evidence:"

Pattern = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class ReviewSignal(BaseModel):
    """The decisions about the entity in effect when its evidence was assessed."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    floor: RiskLevel | None = None
    """A ``confirmed`` decision's level: the assessment is at least this."""
    dampened: tuple[Pattern, ...] = ()
    """Patterns a ``false_positive`` decision dampens."""
    factor: float = Field(default=1.0, ge=0.0, le=1.0)
    """What a dampened pattern's contribution is multiplied by."""
    decisions: tuple[int, ...] = ()
    """Where the decisions are in the review stream (sequences), for an auditor."""


def reviewed(
    score: float,
    contributions: dict[str, float],
    review: ReviewSignal,
    rising: tuple[float, ...],
) -> float:
    """``score`` with the decisions applied; their shares are added to ``contributions``.

    ``rising`` is the thresholds of medium, high and critical.
    """
    if review.dampened and review.factor < 1.0:
        dampened = set(review.dampened)
        taken = sum(
            share * (1.0 - review.factor)
            for name, share in contributions.items()
            if name.startswith(_EVIDENCE) and name[len(_EVIDENCE) :] in dampened and share > 0.0
        )
        taken = min(taken, score)
        if taken > 0.0:
            contributions[FALSE_POSITIVE] = -taken
            score -= taken
    if review.floor is not None and (rank := LEVELS.index(review.floor)) > 0:
        threshold = rising[rank - 1]
        if score < threshold:
            contributions[CONFIRMED] = threshold - score
            score = threshold  # exactly: the level is entered at its threshold
    return min(max(score, 0.0), 1.0)
