"""What can go wrong when people act on cases: each a typed error an API maps to a status."""

from __future__ import annotations

from projections.errors import ProjectionError

__all__ = [
    "CaseConflictError",
    "CaseNotFoundError",
    "CaseStateError",
    "ReviewError",
    "StaleCaseError",
]


class ReviewError(ProjectionError):
    """Base of every review error."""


class CaseNotFoundError(ReviewError, LookupError):
    """No such case (or none the caller may see: the two are never told apart)."""

    def __init__(self, tenant: str, entity: str, number: int | None = None) -> None:
        self.tenant = tenant
        self.entity = entity
        self.number = number
        which = "no case" if number is None else f"no case {number}"
        super().__init__(f"{which} for entity {entity} of tenant {tenant}")


class CaseStateError(ReviewError, ValueError):
    """The action does not fit the case's state (deciding a decided case, reopening an open one)."""

    def __init__(self, key: str, status: str, action: str) -> None:
        self.key = key
        self.status = status
        self.action = action
        super().__init__(f"case {key} is {status}: it cannot be {action}")


class StaleCaseError(ReviewError):
    """The caller acted on a version of the case that is no longer current (HTTP 412)."""

    def __init__(self, key: str, expected: int, current: int) -> None:
        self.key = key
        self.expected = expected
        self.current = current
        super().__init__(
            f"case {key} is at version {current}, not {expected}: reload it and decide again"
        )


class CaseConflictError(StaleCaseError):
    """Someone else acted on the case at the same moment, and got there first (HTTP 409)."""
