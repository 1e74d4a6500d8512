"""The review projection: reads assessments and opens a case when the review policy asks.

Exactly once per assessment: the ``opened`` event's id is the assessment's
place in the log (a redelivery is a duplicate the store drops), and it is
appended fenced on the entity's review subject at the version the decision
was made on (a reviewer acting at the same moment makes it decide again). An
assessment that asks for no case costs no read at all.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import structlog

from eventstore import NO_STREAM, CloudEvent
from eventstore.errors import EventStoreError
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
    from projections.review._decisions import DecisionBook
    from projections.review._events import Trigger
    from projections.review._policy import ReviewPolicy

__all__ = ["ReviewProjection", "opened_on", "opened_output", "raised_by"]

_EVIDENCE = "evidence:"
_UNKNOWN = sys.maxsize
"""An entity's floor after a conflict: read afresh until a read says how far the book must be."""
_KNOWN_LIMIT = 100_000
_log = structlog.get_logger(__name__)


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
    """Opens one case per entity when its assessments call for review.

    With a :class:`DecisionBook` (``book``), an entity's cases are taken from
    the book, brought up to the review stream's end before each fetched batch
    (:meth:`before_batch`): no read per assessment. An entity this projection
    opened a case for, or was refused one, is read afresh once, and that read
    stands until the book has caught up with it. Without a book, or while it
    cannot be refreshed, every entity is read afresh. A case opened on cases
    that missed a newer review event is refused by the fence on the entity's
    last review sequence, and decided again on a fresh read.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        policy: ReviewPolicy,
        clock: Callable[[], datetime],
        name: str = "review",
        book: DecisionBook | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.name = name
        self._clock = clock
        self._actor = Actor(name=f"projection:{name}", role="system")
        self.book = book
        self._book_current = False
        """The last refresh before a batch succeeded: the book may stand for a read."""
        self._known: dict[tuple[str, str], tuple[int, EntityCases | None]] = {}
        """Entities this projection wrote to (or was refused for): until the book's
        position reaches the floor, their cases are those read afresh (``None``: read)."""

    async def before_batch(self) -> None:
        """Bring the book up to the review stream's end before a batch is handled; never raises."""
        if self.book is None:
            return
        try:
            await self.book.refresh()
        except EventStoreError as exc:
            if self._book_current:
                _log.warning("review.book_stale", projection=self.name, error=str(exc))
            self._book_current = False
            return
        self._book_current = True

    async def handle(self, message: Message) -> Result:
        """Open a case for one assessment, join the open one, or do nothing."""
        event, data = self._decode(message)
        assessment = data.assessment
        triggers = self.policy.triggers(assessment)
        if not triggers:
            return Result.commit((), "no_case")
        if (cases := self._booked(message.tenant, message.entity)) is None:
            cases = await self._read(message)
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
        """A case opened: read the entity afresh until the book holds it."""
        if results:
            self._remember(message, max(result.sequence for result in results), None)

    def conflicted(self, message: Message) -> None:
        """The fence refused a case: decide again on a fresh read (the runner hands it back)."""
        self._remember(message, _UNKNOWN, None)

    def _booked(self, tenant: str, entity: str) -> EntityCases | None:
        """The entity's cases without a read, when they may stand for one (``None``: read)."""
        if self.book is None or not self._book_current:
            return None
        key = (tenant, entity)
        if (known := self._known.get(key)) is not None:
            floor, cases = known
            if self.book.position < floor:
                return cases  # None: read afresh
            del self._known[key]  # the book holds all of it now
        return self.book.cases(tenant, entity)

    async def _read(self, message: Message) -> EntityCases:
        """The entity's cases read from the stream, kept until the book holds as much."""
        cases = await read_cases(self.store, message.tenant, message.entity)
        if (message.tenant, message.entity) in self._known:
            self._remember(message, cases.version, cases)
        return cases

    def _remember(self, message: Message, floor: int, cases: EntityCases | None) -> None:
        """Until the book reaches ``floor``, the entity's cases are ``cases`` (``None``: read)."""
        if self.book is None:
            return
        key = (message.tenant, message.entity)
        if len(self._known) >= _KNOWN_LIMIT and key not in self._known:
            # bounded: what is forgotten costs at most a refused case, decided again
            self._known.clear()
        self._known[key] = (floor, cases)

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
