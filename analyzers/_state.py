"""What the analyzer remembers about one entity between two pieces of evidence."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from analyzers._evidence import Severity
from analyzers._levels import RiskLevel

__all__ = ["EntityRiskState"]

NonNegative = Annotated[float, Field(ge=0.0)]
PatternName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class EntityRiskState(BaseModel):
    """The compact, JSON-serialisable memory of one entity's risk.

    Every decayed sum is valued at ``as_of``, the time of the newest evidence
    applied: the evidence count, how much of it reported its own confidence,
    its freshness, and the weighted mass per pattern and per severity. The
    ``*_seen`` maps say when each pattern, severity and source was last seen;
    entries not seen within the window are dropped.

    ``model_dump_json()`` and ``model_validate_json()`` round-trip exactly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    level: RiskLevel = RiskLevel.LOW
    as_of: AwareDatetime | None = None
    last_sequence: int = Field(default=0, ge=0)
    evidence_count: NonNegative = 0.0
    reported_count: NonNegative = 0.0
    freshness: NonNegative = 0.0
    pattern_mass: dict[PatternName, NonNegative] = Field(default_factory=dict)
    pattern_seen: dict[PatternName, AwareDatetime] = Field(default_factory=dict)
    severity_mass: dict[Severity, NonNegative] = Field(default_factory=dict)
    severity_seen: dict[Severity, AwareDatetime] = Field(default_factory=dict)
    sources: dict[str, AwareDatetime] = Field(default_factory=dict)
    impact_mass: NonNegative | None = None
    """The decayed extra mass that evidence reporting an ``impact`` added (``None``: none in
    the window, and nothing written: a state without it reads as before impact existed)."""
    impact_seen: AwareDatetime | None = None
    """When evidence with an ``impact`` was last seen (``None`` exactly when the mass is)."""

    @field_validator("pattern_mass", "pattern_seen", "severity_mass", "severity_seen")
    @classmethod
    def _sorted(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Keep keys sorted, as scoring does, so equal states score identically."""
        return dict(sorted(value.items()))

    @model_validator(mode="after")
    def _paired(self) -> Self:
        if self.pattern_mass.keys() != self.pattern_seen.keys():
            raise ValueError("pattern_mass and pattern_seen must have the same patterns")
        if self.severity_mass.keys() != self.severity_seen.keys():
            raise ValueError("severity_mass and severity_seen must have the same severities")
        if (self.impact_mass is None) != (self.impact_seen is None):
            raise ValueError("impact_mass and impact_seen must be set together")
        return self

    @classmethod
    def initial(cls) -> EntityRiskState:
        """The state of an entity no evidence has been applied to yet."""
        return _INITIAL


_INITIAL = EntityRiskState()
