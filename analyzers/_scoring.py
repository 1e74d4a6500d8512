"""Scoring: from a prior state and one piece of evidence to an assessment and the next state.

Everything here is pure and deterministic: time comes from the evidence, and
the same state, evidence, config and enrichment always give the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers._assessment import Assessment
from analyzers._construct import trusted
from analyzers._levels import LEVELS, RiskLevel, level_between
from analyzers._review import ReviewSignal, reviewed
from analyzers._state import EntityRiskState
from analyzers._window import (
    Features,
    StateFields,
    advance,
    advance_impact,
    decay,
    features,
    fold,
)
from analyzers.errors import EvidenceAlreadyAppliedError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from analyzers._config import AnalyzerConfig, Tables
    from analyzers._evidence import Evidence
    from analyzers._signal import EnrichmentSignal

__all__ = [
    "applied_modifier",
    "assess",
    "assess_many",
    "conservative_assessment",
    "decayed_score",
]

_RANK = {level: rank for rank, level in enumerate(LEVELS)}


def assess(
    state: EntityRiskState,
    evidence: Evidence,
    *,
    config: AnalyzerConfig,
    enrichment: EnrichmentSignal | None = None,
    review: ReviewSignal | None = None,
) -> tuple[Assessment, EntityRiskState]:
    """Score ``evidence`` against ``state``: the assessment and the next state.

    ``enrichment`` is a signal the caller fetched beforehand, ``review`` the
    decisions about the entity in effect; the assessment records both, so
    replaying with the recorded signals gives the same bytes.

    Raises:
        EvidenceAlreadyAppliedError: ``evidence.sequence`` is not after the state's.
    """
    return _assess(state, evidence, config.tables, enrichment, degraded=False, review=review)


def conservative_assessment(
    state: EntityRiskState,
    evidence: Evidence,
    *,
    config: AnalyzerConfig,
    review: ReviewSignal | None = None,
) -> tuple[Assessment, EntityRiskState]:
    """A ``degraded`` assessment for when the enrichment dependency is down.

    The evidence is folded in as usual, but the level never falls (a lower
    level needs the full picture), confidence is scaled down by
    ``degraded_confidence_factor``, and a recommendation says why.

    Raises:
        EvidenceAlreadyAppliedError: ``evidence.sequence`` is not after the state's.
    """
    return _assess(state, evidence, config.tables, None, degraded=True, review=review)


def assess_many(
    state: EntityRiskState, evidence: Iterable[Evidence], *, config: AnalyzerConfig
) -> tuple[tuple[Assessment, ...], EntityRiskState]:
    """Fold ``evidence`` in order: every assessment, and the final state.

    Raises:
        EvidenceAlreadyAppliedError: a sequence is not after the state's.
    """
    tables = config.tables
    assessments = []
    for item in evidence:
        assessment, state = _assess(state, item, tables, None, degraded=False)
        assessments.append(assessment)
    return tuple(assessments), state


def decayed_score(state: EntityRiskState, *, at: datetime, config: AnalyzerConfig) -> float:
    """The evidence score of ``state`` at time ``at``, with no new evidence.

    It never rises as ``at`` moves forward. Times before ``state.as_of`` are
    read as ``state.as_of``; enrichment is not part of the state, so it is not
    included.
    """
    if state.as_of is None:
        return 0.0
    tables = config.tables
    when = max(at, state.as_of)
    kept = decay((when - state.as_of).total_seconds(), tables.half_life)
    cutoff = when - tables.window_span
    patterns = advance(state.pattern_mass, state.pattern_seen, kept, cutoff)[0]
    severities = advance(state.severity_mass, state.severity_seen, kept, cutoff)[0]
    return features(patterns, severities, tables, advance_impact(state, kept, cutoff)[0]).score


def _assess(  # noqa: PLR0913 - the state, the evidence, and every signal it is scored with
    state: EntityRiskState,
    evidence: Evidence,
    tables: Tables,
    enrichment: EnrichmentSignal | None,
    *,
    degraded: bool,
    review: ReviewSignal | None = None,
) -> tuple[Assessment, EntityRiskState]:
    if evidence.sequence and evidence.sequence <= state.last_sequence:
        raise EvidenceAlreadyAppliedError(evidence.sequence, state.last_sequence)
    fields = fold(state, evidence, tables)
    found = features(fields["pattern_mass"], fields["severity_mass"], tables, fields["impact_mass"])
    score = _enriched(found.score, enrichment, tables)
    share = None if enrichment is None else score - found.score
    contributions = found.contributions(share)
    if review is not None:
        score = reviewed(score, contributions, review, tables.thresholds)
    level = level_between(state.level, score, tables.thresholds, tables.falling)
    if degraded and _RANK[level] < _RANK[state.level]:
        level = state.level
    confidence, factors = _confidence(fields, tables, degraded=degraded)
    assessment = trusted(
        Assessment,
        {
            "evidence_id": evidence.event_id,
            "sequence": evidence.sequence,
            "as_of": fields["as_of"],
            "score": score,
            "level": level,
            "previous_level": state.level,
            "confidence": confidence,
            "confidence_factors": factors,
            "patterns": tuple(found.masses),
            "contributions": contributions,
            "recommendations": _recommendations(level, found, tables, degraded=degraded),
            "enrichment": enrichment,
            "review": review,
            "degraded": degraded,
            "analyzer_version": tables.version,
            "config_fingerprint": tables.fingerprint,
        },
    )
    fields["level"] = level
    return assessment, trusted(EntityRiskState, fields)


def applied_modifier(enrichment: EnrichmentSignal, *, config: AnalyzerConfig) -> float:
    """The modifier ``config`` applies for ``enrichment``: weighted, then held in its bounds.

    An enricher's answer is an input the analyzer cannot check, so the config
    bounds how far one answer can move the score (by default it may at most
    halve it): a compromised or broken service cannot clear a critical entity.
    """
    return _modifier(enrichment, config.tables)


def _modifier(enrichment: EnrichmentSignal, tables: Tables) -> float:
    lowest, highest = tables.modifier_bounds
    return max(lowest, min(highest, tables.enrichment_weight * enrichment.modifier))


def _enriched(base: float, enrichment: EnrichmentSignal | None, tables: Tables) -> float:
    """Apply the enrichment modifier: positive closes the gap to 1, negative shrinks the score."""
    if enrichment is None:
        return base
    modifier = _modifier(enrichment, tables)
    return base + modifier * (1.0 - base) if modifier >= 0.0 else base * (1.0 + modifier)


def _confidence(
    fields: StateFields, tables: Tables, *, degraded: bool
) -> tuple[float, dict[str, float]]:
    """The confidence and its factors: volume, source diversity, recency, completeness."""
    count = fields["evidence_count"]
    sources = min(1.0, len(fields["sources"]) / tables.full_sources)
    if count > 0.0:
        completeness = min(1.0, fields["reported_count"] / count)
        recency = min(1.0, fields["freshness"] / count)
        volume = count / (count + tables.volume_half)
    else:
        completeness = recency = volume = 0.0
    w_volume, w_sources, w_recency, w_completeness = tables.confidence_weights
    value = (
        w_volume * volume
        + w_sources * sources
        + w_recency * recency
        + w_completeness * completeness
    )
    if degraded:
        value *= tables.degraded_factor
    factors = {
        "completeness": completeness,
        "recency": recency,
        "sources": sources,
        "volume": volume,
    }
    return max(0.0, min(1.0, value)), factors


def _recommendations(
    level: RiskLevel, found: Features, tables: Tables, *, degraded: bool
) -> tuple[str, ...]:
    """Level advice first, then advice for the patterns present, biggest share first."""
    catalogue = tables.pattern_recommendations
    masses = found.masses
    present = [pattern for pattern in masses if pattern in catalogue]
    if not present and not degraded:
        return tables.level_recommendations[level]
    advice = list(tables.level_recommendations[level])
    for pattern in sorted(present, key=lambda name: (-masses[name], name)):
        advice.extend(catalogue[pattern])
    if degraded:
        advice.append(tables.degraded_recommendation)
    return tuple(dict.fromkeys(advice))
