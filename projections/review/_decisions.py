"""The decisions in effect for each entity: what the risk projection feeds back into scoring.

The book follows the review stream by direct gets (its own position, one get
per new review event) and folds every entity's cases. Asked about an entity
at a moment, it answers with a :class:`~analyzers.ReviewSignal`: the highest
level a ``confirmed`` decision still holds it at, and the patterns a
``false_positive`` still dampens. The risk projection records the signal in
the assessment, so a replay applies the same decisions, whatever the stream
holds by then, and an auditor finds the decisions by their sequences.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from analyzers import ReviewSignal
from eventstore.errors import PermissionDeniedError
from projections.review._case import EntityCases
from projections.review._events import DECIDED
from projections.review._policy import rank

if TYPE_CHECKING:
    from datetime import datetime

    from analyzers import RiskLevel
    from eventstore import EventStore, RecordedEvent
    from projections.review._case import Case
    from projections.review._policy import ReviewPolicy

__all__ = ["DecisionBook"]

_log = structlog.get_logger(__name__)
_DAY = timedelta(days=1)


class DecisionBook:
    """Every entity's cases, as far as the review stream has been read."""

    def __init__(self, store: EventStore, policy: ReviewPolicy) -> None:
        self.store = store
        self.policy = policy
        self.position = 0
        """The last review stream sequence folded in."""
        self._entities: dict[tuple[str, str], EntityCases] = {}
        self._lock = asyncio.Lock()  # two refreshes at once would fold an event twice
        self._leader_denied = False
        self._looks = 0  # refreshes begun: a call one began after shares its reading

    async def refresh(self) -> int:
        """Read the review events stored since the last refresh; how many there were.

        Every event the stream held when the call was made is folded in once it
        returns (a call made while another refresh runs shares the next one). A
        message a replica behind its leader does not have yet is asked of the
        leader, never skipped.

        Raises:
            EventStoreError: the stream cannot be read (the next refresh tries again).
        """
        before = self._looks
        async with self._lock:
            if self._looks > before:
                return 0  # a look that began after this call has read the stream's end
            self._looks += 1
            stream = self.store.config.stream_for("review")
            last = int((await self.store.stream_state(stream))["last_seq"])
            read = 0
            while self.position < last:
                sequence = self.position + 1
                rec = await self.store.get(stream, sequence) or await self._leader(sequence)
                self.position = sequence
                if rec is None or rec.event is None:
                    continue  # deleted, or not an event: no entity to fold it into
                key = (rec.event.tenant, rec.event.subject)
                self._entities.setdefault(key, EntityCases(*key)).apply_recorded(rec)
                read += 1
            return read

    async def _leader(self, sequence: int) -> RecordedEvent | None:
        """The message at ``sequence`` as the stream's leader has it (``None``: there is none).

        A user without the leader grant (a deployment that predates it) gets the
        answer it had before: the message is taken as absent, and said so once.
        """
        stream = self.store.config.stream_for("review")
        try:
            raw = await self.store.client.leader_get(stream, sequence)
        except PermissionDeniedError as exc:
            if not self._leader_denied:
                _log.warning("review.book_leader_denied", sequence=sequence, error=str(exc))
            self._leader_denied = True
            return None
        return None if raw is None else self.store.recorded(raw)

    def cases(self, tenant: str, entity: str) -> EntityCases:
        """The entity's cases as far as the book has read (none yet: an empty one, not kept)."""
        return self._entities.get((tenant, entity)) or EntityCases(tenant, entity)

    def signal(self, tenant: str, entity: str, at: datetime) -> ReviewSignal | None:
        """The decisions about the entity in effect at ``at`` (``None``: none is)."""
        cases = self._entities.get((tenant, entity))
        if cases is None:
            return None
        floor: RiskLevel | None = None
        dampened: list[str] = []
        decisions: list[int] = []
        for case in cases.cases:
            decision, decided_at, sequence = _decision(case)
            if decision is None or decided_at is None:
                continue
            age = at - decided_at
            if decision == "confirmed" and age <= self.policy.confirmed_floor_days * _DAY:
                level = case.decision.level if case.decision and case.decision.level else None
                level = level or case.opened.assessment.level
                if floor is None or rank(level) > rank(floor):
                    floor = level
                decisions.append(sequence)
            elif decision == "false_positive" and age <= self.policy.false_positive_days * _DAY:
                dampened.extend(p for p in case.opened.assessment.patterns if p not in dampened)
                decisions.append(sequence)
        if not decisions:
            return None
        return ReviewSignal(
            floor=floor,
            dampened=tuple(dampened),
            factor=self.policy.false_positive_factor if dampened else 1.0,
            decisions=tuple(decisions),
        )


def _decision(case: Case) -> tuple[str | None, datetime | None, int]:
    """A decided case's outcome, when, and the decision's sequence (``None``: not decided)."""
    if case.status != "decided" or case.decision is None:
        return None, None, 0
    sequence = max(entry.sequence for entry in case.timeline if entry.type == DECIDED)
    return case.decision.outcome, case.decided_at, sequence
