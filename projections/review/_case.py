"""An entity's cases, folded from its review events: what the API, the CLI and the service see."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from projections.review._events import (
    ASSIGNED,
    COMMENTED,
    DECIDED,
    OPENED,
    REOPENED,
    REVIEW_TYPES,
    CaseAssignedData,
    CaseCommentedData,
    CaseDecidedData,
    CaseOpenedData,
    CaseReopenedData,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from pydantic import BaseModel

    from eventstore import RecordedEvent

__all__ = ["Case", "CaseStatus", "EntityCases", "TimelineEntry", "fold_cases"]

CaseStatus = Literal["open", "escalated", "decided"]
"""``escalated`` is still open: someone else must decide it."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One review event of a case, as its timeline shows it."""

    type: str
    sequence: int
    time: datetime
    data: BaseModel


@dataclass(frozen=True, slots=True)
class Case:
    """One case of an entity, as its events leave it."""

    tenant: str
    entity: str
    number: int
    opened: CaseOpenedData
    opened_at: datetime
    status: CaseStatus = "open"
    assignee: str | None = None
    decision: CaseDecidedData | None = None
    """The last decision (an escalation leaves the case open with it)."""
    decided_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()

    @property
    def key(self) -> str:
        """``<tenant>.<entity>.<number>``: tokens hold no ``.``, so the key is unambiguous."""
        return f"{self.tenant}.{self.entity}.{self.number}"


@dataclass(slots=True)
class EntityCases:
    """Every case of one entity, and the fence every next review event must name."""

    tenant: str
    entity: str
    cases: list[Case] = field(default_factory=list)
    version: int = 0
    """The subject sequence of the entity's last review event (0: none): a case's version."""

    @property
    def current(self) -> Case | None:
        """The entity's latest case, open or decided (``None``: it never had one)."""
        return self.cases[-1] if self.cases else None

    @property
    def open_case(self) -> Case | None:
        """The entity's open (or escalated) case, if it has one: at most one is, at a time."""
        current = self.current
        return current if current is not None and current.status != "decided" else None

    def case(self, number: int) -> Case | None:
        """Case ``number`` of the entity (``None``: no such case)."""
        return self.cases[number - 1] if 1 <= number <= len(self.cases) else None

    def apply(self, type_: str, data: BaseModel, sequence: int, time: datetime) -> None:
        """Fold one review event in (events of an unknown case are ignored, never invented)."""
        self.version = max(self.version, sequence)
        entry = TimelineEntry(type_, sequence, time, data)
        if type_ == OPENED and isinstance(data, CaseOpenedData):
            if data.case == len(self.cases) + 1:
                self.cases.append(
                    Case(self.tenant, self.entity, data.case, data, time, timeline=(entry,))
                )
            return
        number = getattr(data, "case", 0)
        case = self.case(number)
        if case is None:
            return
        changes: dict[str, object] = {"timeline": (*case.timeline, entry)}
        if type_ == ASSIGNED and isinstance(data, CaseAssignedData):
            changes["assignee"] = data.assignee
        elif type_ == DECIDED and isinstance(data, CaseDecidedData):
            status = "escalated" if data.outcome == "escalated" else "decided"
            changes.update(status=status, decision=data, decided_at=time)
        elif type_ == REOPENED and isinstance(data, CaseReopenedData):
            changes.update(status="open", decision=None, decided_at=None)
        elif not (type_ == COMMENTED and isinstance(data, CaseCommentedData)):
            return
        self.cases[number - 1] = dataclasses.replace(case, **changes)  # type: ignore[arg-type]

    def apply_recorded(self, rec: RecordedEvent) -> None:
        """Fold one stored review message in, as read back from the stream.

        A message that does not decode, or of a type review does not know, is
        skipped, but still counts for the version: the fence is the subject's
        last sequence, whatever it holds.
        """
        event = rec.event
        model = REVIEW_TYPES.get(event.type) if event is not None else None
        if event is None or model is None or event.data is None:
            self.version = max(self.version, rec.sequence)
            return
        self.apply(event.type, model.model_validate(event.data), rec.sequence, event.time)


def fold_cases(
    tenant: str, entity: str, events: Iterable[tuple[str, BaseModel, int, datetime]]
) -> EntityCases:
    """The entity's cases from its review events ``(type, data, sequence, time)``, in order."""
    cases = EntityCases(tenant, entity)
    for type_, data, sequence, time in events:
        cases.apply(type_, data, sequence, time)
    return cases
