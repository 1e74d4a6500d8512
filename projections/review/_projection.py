"""The review projection: reads assessments and opens a case when the review policy asks.

Exactly once per assessment: the ``opened`` event's id is the assessment's
place in the log (a redelivery is a duplicate the store drops), and it is
appended fenced on the entity's review subject at the version the decision
was made on (a reviewer acting at the same moment makes it decide again). An
assessment that asks for no case costs no read at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore import NO_STREAM, CloudEvent
from projections._deadletter import projection_source
from projections._message import Message, Output, Result
from projections.errors import MisaddressedEventError, UnexpectedEventTypeError
from projections.review._events import OPENED, Actor, AssessmentRef, CaseOpenedData
from projections.review._policy import rank
from projections.review._reading import read_cases
from projections.risk import ASSESSED, RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from eventstore import AppendResult, EventStore
    from projections.review._case import EntityCases
    from projections.review._events import Trigger
    from projections.review._policy import ReviewPolicy

__all__ = ["ReviewProjection", "opened_on", "opened_output", "raised_by"]

_EVIDENCE = "evidence:"


def opened_on(cases: EntityCases, message: Message) -> bool:
    """Whether a case was opened on this message, or on a later one of its stream."""
    stream = message.delivery.stream
    return any(
        case.opened.assessment.stream == stream
        and case.opened.assessment.sequence >= message.sequence
        for case in cases.cases
    )


def opened_output(  # noqa: PLR0913 - who opens it, on what, into which cases, and when
    name: str,
    message: Message,
    event: CloudEvent,
    cases: EntityCases,
    opened: CaseOpenedData,
    *,
    time: datetime,
) -> Output:
    """The ``opened`` event of a case opened on ``message`` by projection ``name``.

    Its id is the message's place in the log (a redelivery is a duplicate the
    store drops), and it is fenced on the entity's cases as they were read.
    """
    stream = message.delivery.stream
    envelope = CloudEvent(
        id=f"{stream}-{message.sequence}",
        source=projection_source(name),
        type=OPENED,
        subject=event.subject,
        tenant=event.tenant,
        time=time,
        correlationid=event.correlationid,
        causationid=event.id,
    )
    return Output(envelope, expected_version=cases.version or NO_STREAM, data=opened)


def raised_by(contributions: dict[str, float]) -> tuple[str, ...]:
    """The patterns whose evidence added to the score, largest share first."""
    shares = [
        (share, name[len(_EVIDENCE) :])
        for name, share in contributions.items()
        if name.startswith(_EVIDENCE) and share > 0.0
    ]
    return tuple(pattern for _, pattern in sorted(shares, key=lambda item: (-item[0], item[1])))


class ReviewProjection:
    """Opens one case per entity when its assessments call for review."""

    def __init__(
        self,
        store: EventStore,
        *,
        policy: ReviewPolicy,
        clock: Callable[[], datetime],
        name: str = "review",
    ) -> None:
        self.store = store
        self.policy = policy
        self.name = name
        self._clock = clock
        self._actor = Actor(name=f"projection:{name}", role="system")

    async def handle(self, message: Message) -> Result:
        """Open a case for one assessment, join the open one, or do nothing."""
        event, data = self._decode(message)
        assessment = data.assessment
        triggers = self.policy.triggers(assessment)
        if not triggers:
            return Result.commit((), "no_case")
        cases = await read_cases(self.store, message.tenant, message.entity)
        if opened_on(cases, message):
            return Result.commit((), "duplicate_skipped")  # opened by this one, or a later one
        if cases.open_case is not None:
            return Result.commit((), "case_joined")  # its timeline shows every assessment
        if not self._opens_again(cases, data, event.time):
            return Result.commit((), "no_case")
        return Result.commit((self._opened(message, event, data, cases, triggers),), "case_opened")

    async def is_handled(self, message: Message) -> bool:
        """Whether a case was already opened on this assessment (or a later one)."""
        return opened_on(await read_cases(self.store, message.tenant, message.entity), message)

    def committed(self, message: Message, results: list[AppendResult]) -> None:
        """Nothing to remember: every decision reads the entity's cases afresh."""

    def conflicted(self, message: Message) -> None:
        """Nothing cached to forget: the runner hands the message back, to decide again."""

    def _decode(self, message: Message) -> tuple[CloudEvent, RiskAssessedData]:
        event, data = self.store.schemas.decode(
            message.delivery.data,
            headers=message.stored_headers,
            max_bytes=self.store.config.payload_limit("risk"),
        )
        message.context["event"] = event
        message.context["data"] = data
        message.log["assessment_id"] = event.id
        if event.type != ASSESSED or not isinstance(data, RiskAssessedData):
            raise UnexpectedEventTypeError(event.type, ASSESSED)
        expected = self.store.config.subject("risk", event.tenant, event.subject)
        if message.delivery.subject != expected:
            raise MisaddressedEventError(message.delivery.subject, expected)
        return event, data

    def _opens_again(self, cases: EntityCases, data: RiskAssessedData, at: datetime) -> bool:
        """After a decision: a higher level opens a new case at once, the same one only later."""
        last = cases.current
        if last is None or last.decision is None or last.decided_at is None:
            return True
        decided = last.decision.level or last.opened.assessment.level
        if rank(data.assessment.level) > rank(decided):
            return True
        return at - last.decided_at >= self.policy.recheck_after

    def _opened(
        self,
        message: Message,
        event: CloudEvent,
        data: RiskAssessedData,
        cases: EntityCases,
        triggers: tuple[Trigger, ...],
    ) -> Output:
        stream = message.delivery.stream
        assessment = data.assessment
        opened = CaseOpenedData(
            case=len(cases.cases) + 1,
            triggers=triggers,
            assessment=AssessmentRef(
                stream=stream,
                sequence=message.sequence,
                level=assessment.level,
                score=assessment.score,
                confidence=assessment.confidence,
                degraded=assessment.degraded,
                patterns=raised_by(assessment.contributions),
            ),
            policy_version=self.policy.version,
            by=self._actor,
        )
        return opened_output(self.name, message, event, cases, opened, time=self._clock())
