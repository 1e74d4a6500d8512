"""The analyzer's output: an explainable assessment of one entity after one piece of evidence."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from analyzers._canonical import canonical_json
from analyzers._levels import RiskLevel
from analyzers._review import ReviewSignal
from analyzers._signal import EnrichmentSignal

__all__ = ["Assessment"]


class Assessment(BaseModel):
    """An entity's risk after one piece of evidence, with the reasons for it.

    ``contributions`` maps each feature to its share of ``score``; the shares sum
    to the score (within 1e-9), so every score is explained. Feature names are
    ``evidence:<pattern>``, ``critical_amplification``, ``pattern_diversity``,
    ``impact_amplification`` when evidence in the window reported an ``impact``,
    ``enrichment`` when an enrichment signal was used (its share may be
    negative: a signal can lower the score), and ``review:confirmed`` /
    ``review:false_positive`` when people's decisions about the entity apply.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    evidence_id: str
    """The id of the evidence event this assessment follows."""
    sequence: int = Field(ge=0)
    as_of: AwareDatetime
    """The time the assessment describes: the newest evidence applied so far."""
    score: float = Field(ge=0.0, le=1.0)
    level: RiskLevel
    previous_level: RiskLevel
    confidence: float = Field(ge=0.0, le=1.0)
    confidence_factors: dict[str, float]
    patterns: tuple[str, ...]
    contributions: dict[str, float]
    recommendations: tuple[str, ...]
    enrichment: EnrichmentSignal | None = None
    review: ReviewSignal | None = None
    """Decisions about the entity in effect (``review:*`` contributions; docs/review.md)."""
    degraded: bool = False
    analyzer_version: str
    config_fingerprint: str
    """:meth:`AnalyzerConfig.fingerprint` of the config that scored it."""

    def canonical_json(self) -> str:
        """The assessment as compact JSON with sorted keys: same inputs, same text."""
        return canonical_json(self)
