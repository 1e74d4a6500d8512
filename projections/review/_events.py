"""The events of human review: a case's life on ``<prefix>.review.<tenant>.<entity>``.

Every event of an entity's cases lives on one subject, so one fence guards
them all: an append names the subject sequence it was decided on (the case's
*version*), and of two reviewers acting on the same version one wins and the
other gets a conflict with the current state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from analyzers import RiskLevel
from eventstore import StreamSpec

if TYPE_CHECKING:
    from eventstore import EventSchemas

__all__ = [
    "ASSIGNED",
    "COMMENTED",
    "DECIDED",
    "OPENED",
    "REOPENED",
    "REVIEW_STREAM",
    "REVIEW_TYPES",
    "Actor",
    "AssessmentRef",
    "CaseAssignedData",
    "CaseCommentedData",
    "CaseDecidedData",
    "CaseOpenedData",
    "CaseReopenedData",
    "Outcome",
    "Role",
    "Trigger",
    "register_review_types",
]

OPENED = "riskpipe.review.opened.v1"
ASSIGNED = "riskpipe.review.assigned.v1"
COMMENTED = "riskpipe.review.commented.v1"
DECIDED = "riskpipe.review.decided.v1"
REOPENED = "riskpipe.review.reopened.v1"

REVIEW_STREAM = StreamSpec(category="review", name="REVIEW")
"""Every review event of an entity on ``<prefix>.review.<tenant>.<entity>``, immutable."""

Outcome = Literal["confirmed", "false_positive", "escalated"]
"""What a reviewer decided: the risk is real, it is not, or someone else must look."""
Role = Literal["reviewer", "operator", "auditor", "admin", "system"]
"""Who may act: ``system`` is the review projection itself, the others are people."""
Trigger = Literal["level", "low_confidence", "degraded", "dead_letters"]
"""Why the review policy opened a case."""

Name = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
"""A reviewer's name as the tokens file gives it: printable ASCII, no whitespace."""
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=r"\S")
]
"""Free text a person wrote (a comment, a reason): 1 to 4,000 characters."""


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Actor(_Data):
    """Who did it: the name and role a token (or the review projection) carries."""

    name: Name
    role: Role


class AssessmentRef(_Data):
    """The assessment a case was opened on (or that joined it): where it is and what it said."""

    stream: str
    sequence: int = Field(ge=1)
    level: RiskLevel
    score: float = Field(ge=0.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    degraded: bool = False
    patterns: tuple[str, ...] = ()
    """The patterns whose evidence raised the score: what a ``false_positive`` dampens."""


class CaseOpenedData(_Data):
    """``riskpipe.review.opened.v1``: the review policy asked a person to look."""

    case: int = Field(ge=1)
    """The case's number among the entity's cases, from 1."""
    triggers: tuple[Trigger, ...] = Field(min_length=1)
    assessment: AssessmentRef
    policy_version: str
    by: Actor


class CaseAssignedData(_Data):
    """``riskpipe.review.assigned.v1``: a reviewer takes (or is given) the case."""

    case: int = Field(ge=1)
    assignee: Name | None
    """``None`` unassigns."""
    by: Actor


class CaseCommentedData(_Data):
    """``riskpipe.review.commented.v1``: a note on the case's timeline."""

    case: int = Field(ge=1)
    text: Text
    by: Actor


class CaseDecidedData(_Data):
    """``riskpipe.review.decided.v1``: the case is closed with an outcome and a reason."""

    case: int = Field(ge=1)
    outcome: Outcome
    level: RiskLevel | None = None
    """An override: ``confirmed`` keeps the entity at no less than this level for a while."""
    reason: Text
    by: Actor


class CaseReopenedData(_Data):
    """``riskpipe.review.reopened.v1``: a decided case is open again, with a reason."""

    case: int = Field(ge=1)
    reason: Text
    by: Actor


REVIEW_TYPES: dict[str, type[BaseModel]] = {
    OPENED: CaseOpenedData,
    ASSIGNED: CaseAssignedData,
    COMMENTED: CaseCommentedData,
    DECIDED: CaseDecidedData,
    REOPENED: CaseReopenedData,
}
"""Every review event type and its data model."""


def register_review_types(schemas: EventSchemas, *, category: str = "review") -> None:
    """Register the review event types in ``schemas``, stored in ``category``."""
    for name, model in REVIEW_TYPES.items():
        schemas.register(name, model, category=category)
