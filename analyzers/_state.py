"""What the analyzer remembers about one entity between two pieces of evidence."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from analyzers._evidence import Severity
from analyzers._levels import RiskLevel

__all__ = ["Aggregate", "EntityRiskState"]

NonNegative = Annotated[float, Field(ge=0.0)]
Aggregate = tuple[NonNegative, AwareDatetime]
"""A time-decayed sum, as ``(value at the state's as_of, last time it was added to)``."""

PatternName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class EntityRiskState(BaseModel):
    """The compact, JSON-serialisable memory of one entity's risk.

    Every decayed sum is valued at ``as_of``, the time of the newest evidence
    applied. Per pattern and per severity, an :data:`Aggregate` also keeps when
    it was last added to; entries not added to within the window are dropped.
    ``sources`` keeps when each source last reported, for source diversity.

    ``model_dump_json()`` and ``model_validate_json()`` round-trip exactly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    level: RiskLevel = RiskLevel.LOW
    as_of: AwareDatetime | None = None
    last_sequence: int = Field(default=0, ge=0)
    evidence_count: NonNegative = 0.0
    reported_count: NonNegative = 0.0
    freshness: NonNegative = 0.0
    patterns: dict[PatternName, Aggregate] = Field(default_factory=dict)
    severities: dict[Severity, Aggregate] = Field(default_factory=dict)
    sources: dict[str, AwareDatetime] = Field(default_factory=dict)

    @field_validator("patterns", "severities", mode="after")
    @classmethod
    def _sorted(cls, value: dict[str, Aggregate]) -> dict[str, Aggregate]:
        """Keep keys sorted, as scoring does, so equal states score identically."""
        return dict(sorted(value.items()))

    @classmethod
    def initial(cls) -> EntityRiskState:
        """The state of an entity no evidence has been applied to yet."""
        return _INITIAL


_INITIAL = EntityRiskState()
