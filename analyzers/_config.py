"""The analyzer's configuration: weights, thresholds, decay and recommendations."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from analyzers._canonical import canonical_text
from analyzers._evidence import Severity
from analyzers._levels import LEVELS, RiskLevel
from analyzers._version import ANALYZER_VERSION, REDERIVABLE_VERSIONS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AnalyzerConfig",
    "ConfidenceWeights",
    "LevelRecommendations",
    "LevelThresholds",
    "RecommendationCatalogue",
    "SeverityWeights",
    "Tables",
]

_DAY = 86_400.0
# Sanity limits: far beyond any useful setting, low enough that no sum can overflow
# and no decay window can reach before the first year evidence may carry.
_MAX_WEIGHT = 100.0
_MAX_SPAN = 3650 * _DAY

Recommendation = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
]
PatternName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class SeverityWeights(_Frozen):
    """How much one piece of evidence of each severity adds to the raw score."""

    low: float = Field(default=0.1, ge=0.0, le=_MAX_WEIGHT)
    medium: float = Field(default=0.3, ge=0.0, le=_MAX_WEIGHT)
    high: float = Field(default=0.6, ge=0.0, le=_MAX_WEIGHT)
    critical: float = Field(default=1.0, ge=0.0, le=_MAX_WEIGHT)

    @model_validator(mode="after")
    def _non_decreasing(self) -> Self:
        if not self.low <= self.medium <= self.high <= self.critical:
            raise ValueError(
                "severity weights must not decrease with severity"
                f" (low <= medium <= high <= critical), got {self.low}, {self.medium},"
                f" {self.high}, {self.critical}"
            )
        return self

    def by_severity(self) -> dict[Severity, float]:
        """The weights keyed by :class:`Severity`."""
        return {severity: getattr(self, severity.value) for severity in Severity}


class LevelThresholds(_Frozen):
    """The score at which each level is entered (low is everything below medium)."""

    medium: float = Field(default=0.3, gt=0.0, lt=1.0)
    high: float = Field(default=0.6, gt=0.0, lt=1.0)
    critical: float = Field(default=0.85, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ascending(self) -> Self:
        if not self.medium < self.high < self.critical:
            raise ValueError(
                "thresholds must be in order medium < high < critical,"
                f" got {self.medium}, {self.high}, {self.critical}"
            )
        return self

    def ascending(self) -> tuple[float, float, float]:
        """The thresholds of medium, high and critical, in that order."""
        return (self.medium, self.high, self.critical)

    def narrowest_band(self) -> tuple[str, float]:
        """The narrowest level band, as ``(description, width)``."""
        bands = [
            ("low (0 to medium)", self.medium),
            ("medium (medium to high)", self.high - self.medium),
            ("high (high to critical)", self.critical - self.high),
        ]
        return min(bands, key=lambda band: band[1])


class ConfidenceWeights(_Frozen):
    """How much each data-quality factor counts in the assessment's confidence."""

    volume: float = Field(default=0.4, ge=0.0, le=_MAX_WEIGHT)
    sources: float = Field(default=0.2, ge=0.0, le=_MAX_WEIGHT)
    recency: float = Field(default=0.2, ge=0.0, le=_MAX_WEIGHT)
    completeness: float = Field(default=0.2, ge=0.0, le=_MAX_WEIGHT)

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if self.volume + self.sources + self.recency + self.completeness <= 0.0:
            raise ValueError("at least one confidence weight must be positive")
        return self


class LevelRecommendations(_Frozen):
    """What to do at each level."""

    low: tuple[Recommendation, ...] = ("No action needed; keep monitoring.",)
    medium: tuple[Recommendation, ...] = ("Review the entity's recent activity.",)
    high: tuple[Recommendation, ...] = (
        "Open an investigation and require step-up verification for sensitive actions.",
    )
    critical: tuple[Recommendation, ...] = (
        "Escalate to the on-call analyst now and contain the entity.",
    )

    def by_level(self) -> dict[RiskLevel, tuple[str, ...]]:
        """The recommendations keyed by :class:`RiskLevel`."""
        return {level: getattr(self, level.value) for level in LEVELS}


_PATTERN_RECOMMENDATIONS: dict[str, tuple[str, ...]] = {
    "failed_login_burst": ("Check for credential stuffing and force a password reset.",),
    "impossible_travel": ("Verify recent sessions with the user and revoke unknown ones.",),
    "malware_detected": ("Isolate the affected host and start incident response.",),
    "data_exfiltration": ("Block outbound transfers for the entity and preserve logs.",),
    "privilege_escalation": ("Review and revoke newly granted privileges.",),
}


class RecommendationCatalogue(_Frozen):
    """Recommendations per level, per pattern, and for degraded assessments.

    A ``patterns`` table you configure replaces the built-in one.
    """

    levels: LevelRecommendations = LevelRecommendations()
    patterns: dict[PatternName, tuple[Recommendation, ...]] = Field(
        default_factory=lambda: dict(_PATTERN_RECOMMENDATIONS)
    )
    degraded: Recommendation = (
        "Enrichment was unavailable: the level is held and will be re-assessed when it recovers."
    )


_INTRODUCED: dict[str, tuple[str, float]] = {
    "enrichment_min_modifier": ("1.1.0", -1.0),
    "enrichment_max_modifier": ("1.1.0", 1.0),
    "impact_amplification": ("1.2.0", 0.0),
}
"""Settings added after 1.0.0: the version that added each, and how scoring behaved before.

An older version's config has no such key, so its fingerprint leaves it out,
and it scores with the earlier behaviour.
"""
_REDERIVE = "rederive"
"""Validation context key: allow an earlier version this build re-derives (replay only)."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _before(version: str, since: str) -> bool:
    return _version_key(version) < _version_key(since)


class AnalyzerConfig(_Frozen):
    """Everything that tunes scoring. ``AnalyzerConfig()`` is the documented default.

    ``analyzer_version`` names the scoring the config was written for and must
    match :data:`analyzers.ANALYZER_VERSION` (only :meth:`for_version` makes one
    for an earlier version, for a replay); :meth:`fingerprint` identifies the
    whole config, so a replay can tell a config change from a version change.
    """

    analyzer_version: str = ANALYZER_VERSION
    half_life_seconds: float = Field(default=_DAY, gt=0.0, le=_MAX_SPAN)
    window_seconds: float = Field(default=7 * _DAY, gt=0.0, le=_MAX_SPAN)
    severity_weights: SeverityWeights = SeverityWeights()
    critical_amplification: float = Field(default=1.0, ge=0.0, le=_MAX_WEIGHT)
    impact_amplification: float = Field(default=1.0, ge=0.0, le=_MAX_WEIGHT)
    """How much of its mass evidence adds again per unit of reported ``impact`` (v2 only):
    1.0 and impact 1 count it twice; 0 ignores impact."""
    diversity_bonus: float = Field(default=0.25, ge=0.0, le=_MAX_WEIGHT)
    diversity_cap: float = Field(default=1.0, ge=0.0, le=_MAX_WEIGHT)
    saturation: float = Field(default=1.0, gt=0.0, le=_MAX_WEIGHT)
    enrichment_weight: float = Field(default=1.0, ge=0.0, le=_MAX_WEIGHT)
    enrichment_min_modifier: float = Field(default=-0.5, ge=-1.0, le=0.0)
    """The lowest modifier an enrichment signal may apply: -0.5 halves the score at most."""
    enrichment_max_modifier: float = Field(default=1.0, ge=0.0, le=1.0)
    """The highest modifier an enrichment signal may apply (1: all the way to 1)."""
    thresholds: LevelThresholds = LevelThresholds()
    hysteresis_margin: float = Field(default=0.05, ge=0.0)
    volume_half: float = Field(default=3.0, gt=0.0, le=1e6)
    full_sources: int = Field(default=3, ge=1, le=64)
    confidence_weights: ConfidenceWeights = ConfidenceWeights()
    degraded_confidence_factor: float = Field(default=0.5, ge=0.0, le=1.0)
    max_patterns: int = Field(default=64, ge=1, le=1024)
    recommendations: RecommendationCatalogue = RecommendationCatalogue()
    pattern_weights: dict[PatternName, Annotated[float, Field(ge=0.0, le=_MAX_WEIGHT)]] = Field(
        default_factory=dict, max_length=1024
    )
    """A multiplier of each named pattern's evidence mass (a pattern not listed weighs 1.0),
    as ``riskpipe learn`` fits them; empty, the config scores and fingerprints as before."""

    _tables: Tables = PrivateAttr()
    _fingerprint: str = PrivateAttr()

    @field_validator("analyzer_version")
    @classmethod
    def _current_version(cls, value: str, info: ValidationInfo) -> str:
        """Refuse a config written for another scoring: its settings need a review first."""
        rederiving = isinstance(info.context, dict) and info.context.get(_REDERIVE) is True
        if value == ANALYZER_VERSION or (rederiving and value in REDERIVABLE_VERSIONS):
            return value
        raise ValueError(
            f"this config was written for analyzer {value}, this analyzer is"
            f" {ANALYZER_VERSION}: review the scoring changes, then set"
            f' analyzer_version = "{ANALYZER_VERSION}"'
        )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.window_seconds < self.half_life_seconds:
            raise ValueError(
                f"window_seconds ({self.window_seconds}) must be at least"
                f" half_life_seconds ({self.half_life_seconds})"
            )
        band, width = self.thresholds.narrowest_band()
        if self.hysteresis_margin >= width:
            raise ValueError(
                f"hysteresis_margin {self.hysteresis_margin} is not narrower than the"
                f" {band} band ({width:.6g}): a falling score could skip a level"
            )
        return self

    def model_post_init(self, _context: Any, /) -> None:  # noqa: ANN401 - pydantic hook signature
        """Derive the lookup tables and fingerprint once, when the config is validated."""
        self._fingerprint = hashlib.sha256(self.canonical_json().encode()).hexdigest()
        self._tables = Tables(self, self._fingerprint)

    def canonical_json(self) -> str:
        """The config as compact JSON with sorted keys: equal configs, equal text.

        Settings its analyzer version did not have yet are left out, so a
        config re-derived for an earlier version has that version's fingerprint.
        """
        value = self.model_dump(mode="json")
        for name, (since, _) in _INTRODUCED.items():
            if _before(self.analyzer_version, since):
                del value[name]
        if not value["pattern_weights"]:
            # None set: the config of before pattern weights existed, its fingerprint unchanged
            del value["pattern_weights"]
        return canonical_text(value)

    def for_version(self, version: str) -> AnalyzerConfig:
        """This config as analyzer ``version`` scored with it: its behaviour and fingerprint.

        For an audit replay of assessments an earlier version made: the result
        stamps ``version`` on its assessments and scores as that version did.

        Raises:
            ValueError: this build cannot re-derive ``version`` (see ``REDERIVABLE_VERSIONS``).
        """
        if version == self.analyzer_version:
            return self
        if version not in REDERIVABLE_VERSIONS:
            raise ValueError(f"analyzer {version} cannot be re-derived by {ANALYZER_VERSION}")
        update: dict[str, Any] = {"analyzer_version": version}
        for name, (since, before) in _INTRODUCED.items():
            if _before(version, since):
                update[name] = before
        return self.model_validate({**self.model_dump(), **update}, context={_REDERIVE: True})

    def fingerprint(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: stable across processes and files."""
        return self._fingerprint

    @property
    def tables(self) -> Tables:
        """Lookup tables derived from this config, for the scoring hot path."""
        # Read the private slot directly: ``self._tables`` goes through
        # BaseModel.__getattr__, which costs more than a tenth of an assessment.
        return cast("Tables", (self.__pydantic_private__ or {})["_tables"])

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:  # noqa: ARG002 - every copy is a fresh validated value, so deep is moot
        """A validated copy with ``update`` applied: a config is never left unchecked.

        Raises:
            pydantic.ValidationError: the updated config is invalid.
        """
        return self.model_validate({**self.model_dump(), **(update or {})})


class Tables:
    """Values the scoring needs on every call, computed once per config."""

    __slots__ = (
        "amplification",
        "confidence_weights",
        "degraded_factor",
        "degraded_recommendation",
        "diversity_bonus",
        "diversity_cap",
        "enrichment_weight",
        "falling",
        "fingerprint",
        "full_sources",
        "half_life",
        "impact_amplification",
        "level_recommendations",
        "margin",
        "max_patterns",
        "modifier_bounds",
        "pattern_recommendations",
        "pattern_weights",
        "saturation",
        "severity_weights",
        "thresholds",
        "version",
        "volume_half",
        "window_span",
    )

    def __init__(self, config: AnalyzerConfig, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.version = config.analyzer_version
        self.modifier_bounds = (config.enrichment_min_modifier, config.enrichment_max_modifier)
        self.half_life = config.half_life_seconds
        self.window_span = timedelta(seconds=config.window_seconds)
        self.severity_weights = config.severity_weights.by_severity()
        self.pattern_weights = dict(config.pattern_weights)
        self.amplification = config.critical_amplification
        self.impact_amplification = config.impact_amplification
        self.diversity_bonus = config.diversity_bonus
        self.diversity_cap = config.diversity_cap
        self.saturation = config.saturation
        self.enrichment_weight = config.enrichment_weight
        self.thresholds = config.thresholds.ascending()
        self.margin = config.hysteresis_margin
        self.falling = tuple(threshold - self.margin for threshold in self.thresholds)
        self.volume_half = config.volume_half
        self.full_sources = config.full_sources
        weights = config.confidence_weights
        total = weights.volume + weights.sources + weights.recency + weights.completeness
        self.confidence_weights = (
            weights.volume / total,
            weights.sources / total,
            weights.recency / total,
            weights.completeness / total,
        )
        self.degraded_factor = config.degraded_confidence_factor
        self.max_patterns = config.max_patterns
        self.level_recommendations = config.recommendations.levels.by_level()
        self.pattern_recommendations = dict(config.recommendations.patterns)
        self.degraded_recommendation = config.recommendations.degraded

    def __eq__(self, other: object) -> bool:
        # Tables are derived from a config, so equal fingerprints mean equal tables;
        # configs compare their private attributes too, so this keeps them comparable.
        return isinstance(other, Tables) and other.fingerprint == self.fingerprint

    __hash__ = None  # type: ignore[assignment] # compared by fingerprint, never used as a key
