"""What people do to cases: assign, comment, decide, reopen. Each one event, fenced.

Every action reads the entity's cases, checks that it fits the case's state,
and appends one event with the entity's review version as its expected
version. A caller that names the version it saw (an HTTP ``If-Match``) gets
:class:`StaleCaseError` when it is no longer current; two callers acting on
the same version at once both pass that check, and the store lets exactly
one of them append: the other gets :class:`CaseConflictError`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from eventstore import NO_STREAM, CloudEvent
from eventstore.errors import ConcurrencyConflictError
from projections.review._events import (
    ASSIGNED,
    COMMENTED,
    DECIDED,
    REOPENED,
    Actor,
    CaseAssignedData,
    CaseCommentedData,
    CaseDecidedData,
    CaseReopenedData,
)
from projections.review._reading import read_cases
from projections.review.errors import (
    CaseConflictError,
    CaseNotFoundError,
    CaseStateError,
    StaleCaseError,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from pydantic import BaseModel

    from analyzers import RiskLevel
    from eventstore import EventStore
    from projections.review._case import Case, EntityCases
    from projections.review._events import Outcome

__all__ = ["ReviewService"]

_SOURCE = "riskpipe/review"


class ReviewService:
    """The one way people change cases: the HTTP API and the CLI both go through it."""

    def __init__(self, store: EventStore, *, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

    async def cases(self, tenant: str, entity: str) -> EntityCases:
        """Every case of the entity, and its current version."""
        return await read_cases(self.store, tenant, entity)

    async def case(self, tenant: str, entity: str, number: int | None = None) -> Case:
        """Case ``number`` of the entity (default: its latest).

        Raises:
            CaseNotFoundError: the entity has no such case.
        """
        cases = await self.cases(tenant, entity)
        found = cases.current if number is None else cases.case(number)
        if found is None:
            raise CaseNotFoundError(tenant, entity, number)
        return found

    async def assign(  # noqa: PLR0913 - which case, to whom, by whom, at which version
        self,
        tenant: str,
        entity: str,
        number: int,
        assignee: str | None,
        *,
        by: Actor,
        if_version: int | None = None,
    ) -> tuple[Case, int]:
        """Give the case to ``assignee`` (``None``: to no one); the case and its new version.

        Raises:
            CaseNotFoundError, CaseStateError, StaleCaseError, CaseConflictError.
        """
        data = CaseAssignedData(case=number, assignee=assignee, by=by)
        return await self._act(
            tenant,
            entity,
            number,
            type_=ASSIGNED,
            data=data,
            if_version=if_version,
            action="assigned",
        )

    async def comment(  # noqa: PLR0913 - which case, what, by whom, at which version
        self,
        tenant: str,
        entity: str,
        number: int,
        text: str,
        *,
        by: Actor,
        if_version: int | None = None,
    ) -> tuple[Case, int]:
        """Add a comment to the case's timeline (decided cases take comments too).

        Raises:
            CaseNotFoundError, StaleCaseError, CaseConflictError, pydantic.ValidationError.
        """
        data = CaseCommentedData(case=number, text=text, by=by)
        return await self._act(
            tenant, entity, number, type_=COMMENTED, data=data, if_version=if_version, action=None
        )

    async def decide(  # noqa: PLR0913 - which case, the decision, by whom, at which version
        self,
        tenant: str,
        entity: str,
        number: int,
        outcome: Outcome,
        reason: str,
        *,
        by: Actor,
        level: RiskLevel | None = None,
        if_version: int | None = None,
    ) -> tuple[Case, int]:
        """Decide the case: ``confirmed``, ``false_positive`` or ``escalated``, with a reason.

        Raises:
            CaseNotFoundError, CaseStateError (already decided), StaleCaseError,
            CaseConflictError (someone decided it at the same moment),
            pydantic.ValidationError (an empty reason).
        """
        data = CaseDecidedData(case=number, outcome=outcome, level=level, reason=reason, by=by)
        return await self._act(
            tenant,
            entity,
            number,
            type_=DECIDED,
            data=data,
            if_version=if_version,
            action="decided",
        )

    async def reopen(  # noqa: PLR0913 - which case, why, by whom, at which version
        self,
        tenant: str,
        entity: str,
        number: int,
        reason: str,
        *,
        by: Actor,
        if_version: int | None = None,
    ) -> tuple[Case, int]:
        """Open a decided case again, with a reason.

        Raises:
            CaseNotFoundError, CaseStateError (it is open), StaleCaseError, CaseConflictError.
        """
        data = CaseReopenedData(case=number, reason=reason, by=by)
        return await self._act(
            tenant,
            entity,
            number,
            type_=REOPENED,
            data=data,
            if_version=if_version,
            action="reopened",
        )

    async def _act(  # noqa: PLR0913 - the case, the event, and the checks it must pass
        self,
        tenant: str,
        entity: str,
        number: int,
        *,
        type_: str,
        data: BaseModel,
        if_version: int | None,
        action: str | None,
    ) -> tuple[Case, int]:
        cases = await self.cases(tenant, entity)
        case = cases.case(number)
        if case is None:
            raise CaseNotFoundError(tenant, entity, number)
        if if_version is not None and if_version != cases.version:
            raise StaleCaseError(case.key, if_version, cases.version)
        if action is not None:
            _check_state(case, action)
        if number != len(cases.cases) and action is not None:
            raise CaseStateError(case.key, "superseded by a later case", action)
        event = CloudEvent(
            id=uuid.uuid4().hex,
            source=_SOURCE,
            type=type_,
            subject=entity,
            tenant=tenant,
            time=self._clock(),
        )
        try:
            stored = await self.store.append(
                event, expected_version=cases.version or NO_STREAM, data=data
            )
        except ConcurrencyConflictError as exc:
            current = exc.actual if exc.actual is not None else cases.version
            raise CaseConflictError(case.key, cases.version, current) from exc
        cases.apply(type_, data, stored.version, event.time)
        updated = cases.case(number)
        assert updated is not None  # noqa: S101 - it was found above
        return updated, cases.version


def _check_state(case: Case, action: str) -> None:
    """Refuse an action the case's state does not allow.

    Raises:
        CaseStateError: deciding or assigning a decided case, reopening an open one.
    """
    if action == "reopened":
        if case.status != "decided":
            raise CaseStateError(case.key, case.status, action)
    elif case.status == "decided":
        raise CaseStateError(case.key, case.status, action)
