"""Human review: cases opened by policy, decided by people, kept as events in the log."""

from projections.review._case import Case, CaseStatus, EntityCases, TimelineEntry, fold_cases
from projections.review._dead_letters import DeadLetterReview
from projections.review._decisions import DecisionBook
from projections.review._events import (
    ASSIGNED,
    COMMENTED,
    DECIDED,
    OPENED,
    REOPENED,
    REVIEW_STREAM,
    REVIEW_TYPES,
    Actor,
    AssessmentRef,
    CaseAssignedData,
    CaseCommentedData,
    CaseDecidedData,
    CaseOpenedData,
    CaseReopenedData,
    Outcome,
    Role,
    Trigger,
    register_review_types,
)
from projections.review._listing import all_cases
from projections.review._policy import ReviewPolicy, load_policy, rank
from projections.review._projection import ReviewProjection, opened_on, raised_by
from projections.review._reading import read_cases
from projections.review._service import ReviewService

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
    "Case",
    "CaseAssignedData",
    "CaseCommentedData",
    "CaseDecidedData",
    "CaseOpenedData",
    "CaseReopenedData",
    "CaseStatus",
    "DeadLetterReview",
    "DecisionBook",
    "EntityCases",
    "Outcome",
    "ReviewPolicy",
    "ReviewProjection",
    "ReviewService",
    "Role",
    "TimelineEntry",
    "Trigger",
    "all_cases",
    "fold_cases",
    "load_policy",
    "opened_on",
    "raised_by",
    "rank",
    "read_cases",
    "register_review_types",
]
