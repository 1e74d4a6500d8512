"""Cases for repeated dead letters: an entity whose evidence keeps failing asks for a person too.

Turned on by the review policy's ``open_on_dead_letters`` (N). This
projection (``review-dlq``) reads the risk projection's dead letters; when an
entity has N of them in the queue or more (replayed ones count, purged ones
are gone), and no case of it is open, it opens one with the trigger
``dead_letters``. The case names the dead letter that tipped it (stream and
sequence) and the entity's latest assessment's level, score and confidence
(``low`` and 0 when it has none). Exactly once, as the review projection: the
id is the dead letter's place, the append is fenced on the entity's cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers import RiskLevel
from eventstore.errors import DecodeError
from projections._deadletter import DEAD_LETTERED, DeadLetterData, dlq_subject
from projections._message import Message, Output, Result
from projections.errors import UnexpectedEventTypeError
from projections.review._events import Actor, AssessmentRef, CaseOpenedData
from projections.review._projection import opened_on, opened_output
from projections.review._reading import read_cases
from projections.risk import RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from eventstore import AppendResult, CloudEvent, EventStore
    from projections.review._case import EntityCases
    from projections.review._policy import ReviewPolicy

__all__ = ["DeadLetterReview"]


class DeadLetterReview:
    """Opens a case for an entity with repeated dead letters of the ``watches`` projection."""

    def __init__(
        self,
        store: EventStore,
        *,
        policy: ReviewPolicy,
        clock: Callable[[], datetime],
        watches: str = "risk",
        name: str = "review-dlq",
    ) -> None:
        self.store = store
        self.policy = policy
        self.watches = watches
        self.name = name
        self._clock = clock
        self._actor = Actor(name=f"projection:{name}", role="system")

    def subjects(self) -> str:
        """The dead letters it reads: ``<prefix>.dlq.<watches>.>``."""
        return f"{self.store.config.prefix}.dlq.{self.watches}.>"

    async def handle(self, message: Message) -> Result:
        """Open a case when this dead letter makes the entity's count reach the threshold."""
        event, data = self._decode(message)
        threshold = self.policy.open_on_dead_letters
        if threshold is None or data.projection != self.watches:
            return Result.commit((), "no_case")
        tenant, entity = event.tenant, event.subject
        if await self._count(tenant, entity, threshold) < threshold:
            return Result.commit((), "no_case")
        cases = await read_cases(self.store, tenant, entity)
        if opened_on(cases, message):
            return Result.commit((), "duplicate_skipped")
        if cases.open_case is not None:
            return Result.commit((), "case_joined")
        last = cases.current
        decided_at = last.decided_at if last is not None else None
        if decided_at is not None and event.time - decided_at < self.policy.recheck_after:
            return Result.commit((), "no_case")  # decided lately: the next look is later
        return Result.commit((await self._opened(message, event, cases),), "case_opened")

    async def is_handled(self, message: Message) -> bool:
        """Whether a case was already opened on this dead letter (or a later one)."""
        event, _ = self._decode(message)
        return opened_on(await read_cases(self.store, event.tenant, event.subject), message)

    def committed(self, message: Message, results: list[AppendResult]) -> None:
        """Nothing to remember: every decision reads afresh."""

    def conflicted(self, message: Message) -> None:
        """Nothing cached to forget."""

    def _decode(self, message: Message) -> tuple[CloudEvent, DeadLetterData]:
        event, data = self.store.schemas.decode(
            message.delivery.data,
            headers=message.stored_headers,
            max_bytes=self.store.config.payload_limit("dlq"),
        )
        message.context["event"] = event
        if event.type != DEAD_LETTERED or not isinstance(data, DeadLetterData):
            raise UnexpectedEventTypeError(event.type, DEAD_LETTERED)
        return event, data

    async def _count(self, tenant: str, entity: str, enough: int) -> int:
        """The entity's dead letters in the queue, counted up to ``enough`` (direct gets)."""
        stream = self.store.config.stream_for("dlq")
        subject = dlq_subject(self.store.config, self.watches, tenant, entity)
        count, sequence = 0, 1
        while count < enough and (
            rec := await self.store.get(stream, sequence, next_on_subject=subject)
        ):
            count += 1
            sequence = rec.sequence + 1
        return count

    async def _opened(self, message: Message, event: CloudEvent, cases: EntityCases) -> Output:
        level, score, confidence = await self._latest(event)
        opened = CaseOpenedData(
            case=len(cases.cases) + 1,
            triggers=("dead_letters",),
            assessment=AssessmentRef(
                stream=message.delivery.stream,
                sequence=message.sequence,
                level=level,
                score=score,
                confidence=confidence,
            ),
            policy_version=self.policy.version,
            by=self._actor,
        )
        return opened_output(self.name, message, event, cases, opened, time=self._clock())

    async def _latest(self, event: CloudEvent) -> tuple[RiskLevel, float, float]:
        """The entity's latest assessed level, score and confidence (none: low, 0, 0).

        Whatever else the entity's risk subject holds last (a message that is no
        assessment, or does not decode) counts as no assessment: the case is
        about the dead letters, and opening it must not fail on a foreign message.
        """
        subject = self.store.config.subject("risk", event.tenant, event.subject)
        raw = await self.store.last_message(subject)
        try:
            data = None if raw is None else self.store.decoded(raw)[1]
        except DecodeError:
            data = None
        if not isinstance(data, RiskAssessedData):
            return RiskLevel.LOW, 0.0, 0.0
        assessment = data.assessment
        return assessment.level, assessment.score, assessment.confidence
