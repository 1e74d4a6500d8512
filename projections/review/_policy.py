"""The review policy: when an assessment asks for a person to look, and what decisions do after.

A versioned config beside the analyzer's, validated the same way
(``riskpipe review policy check FILE``): a bad file stops the worker at start
with every problem named, never half-applied.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analyzers import RiskLevel, load_settings_file

if TYPE_CHECKING:
    from pathlib import Path

    from analyzers import Assessment
    from projections.review._events import Trigger

__all__ = ["ReviewPolicy", "load_policy", "rank"]

_DAY = 86_400.0
_LEVELS = tuple(RiskLevel)
_MAX_DAYS = 3650.0


def rank(level: RiskLevel) -> int:
    """A level's place from ``low`` (0) to ``critical`` (3)."""
    return _LEVELS.index(level)


class ReviewPolicy(BaseModel):
    """When a case opens, and how long a decision weighs on the entity's later assessments.

    ``ReviewPolicy()`` is the documented default: a case opens when an
    entity's level reaches ``high``, when an assessment at ``medium`` or above
    has a confidence below 0.3, and when an assessment is degraded.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")] = "1"
    """Recorded in every case it opens, so an auditor knows which rules did."""
    open_at: RiskLevel = RiskLevel.HIGH
    """An assessment at this level or above opens a case."""
    low_confidence_below: float | None = Field(default=0.3, ge=0.0, le=1.0)
    """An assessment at ``low_confidence_from`` or above with a confidence below this opens
    a case (``None``: never)."""
    low_confidence_from: RiskLevel = RiskLevel.MEDIUM
    open_on_degraded: bool = True
    """A conservative assessment (made while enrichment was down) opens a case."""
    open_on_dead_letters: int | None = Field(default=None, ge=1, le=10_000)
    """An entity with this many dead letters of the risk projection or more opens a case
    (``None``: never). Run by the ``review-dlq`` projection."""
    recheck_after_days: float = Field(default=30.0, ge=0.0, le=_MAX_DAYS)
    """After a decision, a new case opens at once for a level above the one decided; for
    the same level or a lower one, only once this many days have passed."""
    confirmed_floor_days: float = Field(default=30.0, ge=0.0, le=_MAX_DAYS)
    """A ``confirmed`` decision keeps the entity at no less than the decided level this long."""
    false_positive_days: float = Field(default=30.0, ge=0.0, le=_MAX_DAYS)
    """A ``false_positive`` decision dampens the patterns that raised the case this long."""
    false_positive_factor: float = Field(default=0.5, ge=0.0, le=1.0)
    """What a dampened pattern's contribution is multiplied by (0 silences it)."""

    @property
    def recheck_after(self) -> timedelta:
        """:attr:`recheck_after_days` as a duration."""
        return timedelta(seconds=self.recheck_after_days * _DAY)

    def triggers(self, assessment: Assessment) -> tuple[Trigger, ...]:
        """Why ``assessment`` asks for a case (empty: it does not)."""
        found: list[Trigger] = []
        level = rank(assessment.level)
        if level >= rank(self.open_at):
            found.append("level")
        if (
            self.low_confidence_below is not None
            and level >= rank(self.low_confidence_from)
            and assessment.confidence < self.low_confidence_below
        ):
            found.append("low_confidence")
        if self.open_on_degraded and assessment.degraded:
            found.append("degraded")
        return tuple(found)


def load_policy(path: Path) -> ReviewPolicy:
    """Read and validate the review policy in ``path`` (``.toml``, ``.yaml`` or ``.yml``).

    Raises:
        InvalidConfigError: the file cannot be read or parsed, or the policy is invalid.
    """
    return load_settings_file(path, ReviewPolicy, what="review policy")
