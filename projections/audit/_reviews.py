"""The decisions an assessment says it applied, checked against the review stream.

An assessment records the decisions in effect (its ``review`` signal) by
their review stream sequences. A replay re-derives it with the recorded
signal, as it does with an enrichment signal; this check makes sure the
signal is one the log can account for: every decision it names is a
``decided`` event of the same entity, stored before the assessment, whose
outcome is the one the signal's effect needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.errors import NotProvisionedError
from projections.review import DECIDED, CaseDecidedData

if TYPE_CHECKING:
    from datetime import datetime

    from analyzers import ReviewSignal
    from eventstore import EventStore

__all__ = ["RecordedDecision", "impossible_review", "recorded_decisions"]


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    """A ``decided`` event of the review stream, as a replay checks signals against it."""

    tenant: str
    entity: str
    outcome: str
    stored_at: datetime


async def recorded_decisions(store: EventStore) -> dict[int, RecordedDecision]:
    """Every decision in the review stream, by sequence (none when there is no stream)."""
    found: dict[int, RecordedDecision] = {}
    try:
        stream = store.config.stream_for("review")
        async for rec in store.read_all(stream=stream):
            event = rec.event
            if event is None or event.type != DECIDED or event.data is None:
                continue
            outcome = CaseDecidedData.model_validate(event.data).outcome
            found[rec.sequence] = RecordedDecision(
                event.tenant, event.subject, outcome, rec.stored_at
            )
    except (NotProvisionedError, ValueError):
        return found  # a store made before review, or a topology without it
    return found


def impossible_review(
    signal: ReviewSignal | None,
    entity: tuple[str, str],
    stored_at: datetime,
    decisions: dict[int, RecordedDecision],
) -> str | None:
    """Why the recorded ``signal`` cannot be what the log held (``None``: it can)."""
    if signal is None:
        return None
    outcomes = set()
    for sequence in signal.decisions:
        problem = _unaccounted(sequence, decisions.get(sequence), entity, stored_at)
        if problem is not None:
            return f"impossible review: {problem}"
        outcomes.add(decisions[sequence].outcome)
    if signal.floor is not None and "confirmed" not in outcomes:
        return "impossible review: a floor without a confirmed decision"
    if signal.dampened and "false_positive" not in outcomes:
        return "impossible review: dampened patterns without a false_positive decision"
    return None


def _unaccounted(
    sequence: int,
    decision: RecordedDecision | None,
    entity: tuple[str, str],
    stored_at: datetime,
) -> str | None:
    """Why decision ``sequence`` cannot be behind an assessment of ``entity`` stored then."""
    if decision is None:
        return f"decision {sequence} is not in the review stream"
    if (decision.tenant, decision.entity) != entity:
        return (
            f"decision {sequence} is about {decision.tenant}/{decision.entity},"
            f" not {entity[0]}/{entity[1]}"
        )
    if decision.stored_at > stored_at:
        return f"decision {sequence} was made after the assessment"
    return None
