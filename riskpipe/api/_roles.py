"""Who may do what: the one table of the API's roles and their permissions.

Every route names the permission it needs (:func:`riskpipe.api.require`), and
this table alone says which roles hold it, so a reviewer of the table sees the
whole policy in one place. A token is also scoped to tenants: a permission is
only ever exercised on the objects of the token's tenants (see
:class:`riskpipe.api.Principal`), and what lies outside them is answered as
not found.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PERMISSIONS", "ROLES", "ApiRole", "Permission", "allows"]


class Permission(StrEnum):
    """What a route does, as the roles table names it."""

    STATUS_READ = "status:read"
    """The pipeline's status: counts over every tenant (so it also needs every tenant)."""
    DEAD_LETTERS_READ = "dead-letters:read"
    DEAD_LETTERS_WRITE = "dead-letters:write"
    """Replay and purge dead letters."""
    CASES_READ = "cases:read"
    CASES_WRITE = "cases:write"
    """Assign, comment on, decide and reopen cases."""
    EVIDENCE_WRITE = "evidence:write"
    """Record evidence (``POST /api/evidence``): a service's, never a person's."""


ApiRole = Literal["reviewer", "operator", "auditor", "admin", "producer"]
"""The roles a token may carry: a person's (those of a case event's ``Actor``), or
``producer``, a service that records evidence."""
ROLES: tuple[ApiRole, ...] = get_args(ApiRole)

_READS = frozenset(p for p in Permission if p.value.endswith(":read"))

PERMISSIONS: Mapping[ApiRole, frozenset[Permission]] = MappingProxyType(
    {
        "reviewer": frozenset({Permission.CASES_READ, Permission.CASES_WRITE}),
        "operator": frozenset(
            {Permission.DEAD_LETTERS_READ, Permission.DEAD_LETTERS_WRITE, Permission.STATUS_READ}
        ),
        "auditor": _READS,
        "admin": frozenset(Permission) - {Permission.EVIDENCE_WRITE},
        "producer": frozenset({Permission.EVIDENCE_WRITE}),
    }
)
"""Each role's permissions: the whole access policy, within the token's tenants.

Recording evidence is a producer's alone, not an admin's: evidence is what a
service observed, and a person who decides cases (or replays dead letters)
must not also be able to make up the observations a case is decided on. A
producer token can do nothing else, so one leaked from a service's
configuration reads nothing.
"""


def allows(role: ApiRole, permission: Permission) -> bool:
    """Whether ``role`` holds ``permission``."""
    return permission in PERMISSIONS[role]
