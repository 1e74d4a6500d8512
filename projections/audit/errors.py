"""The errors of the audit tools: every one is a :class:`~projections.errors.ProjectionError`."""

from __future__ import annotations

from projections.errors import ProjectionError

__all__ = ["AuditError", "InvalidScopeError"]


class AuditError(ProjectionError):
    """Root of the errors raised by :mod:`projections.audit`."""


class InvalidScopeError(AuditError, ValueError):
    """A replay, explain or export scope that cannot select anything sensible."""


class ReplayPartError(AuditError):
    """A process replaying part of a scope failed or died; the replay has no report."""
