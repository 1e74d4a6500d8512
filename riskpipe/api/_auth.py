"""Who is asking, and may they: the bearer token, then the route's permission.

A route takes ``principal: Principal = Depends(require(Permission.X))``. A
request without a usable token is answered 401 with ``WWW-Authenticate:
Bearer``; a token whose role lacks the permission, 403. Whether the object
asked for belongs to one of the token's tenants is the route's to check
(:meth:`Principal.sees`), and one that does not is answered 404, exactly as
one that does not exist, so that ids of other tenants cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from riskpipe.api._observe import PRINCIPAL_KEY
from riskpipe.api._problems import ProblemError
from riskpipe.api._tokens import Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

    from eventstore import EventStore
    from projections.readmodel import ReadModelReader
    from riskpipe.api._roles import Permission
    from riskpipe.api._tokens import TokenTable

__all__ = ["ApiContext", "Authenticated", "Context", "authenticated", "context", "require"]

_bearer = HTTPBearer(auto_error=False, description="A token from `riskpipe api add-token`.")


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the routes work with: the store, the tokens, the projection, the registry."""

    store: EventStore
    tokens: TokenTable
    projection: str
    registry: CollectorRegistry
    reader: ReadModelReader | None = None
    """The SQL read model, which the case list reads (``None``: not configured)."""


def context(request: Request) -> ApiContext:
    """The app's :class:`ApiContext` (a dependency)."""
    ctx: ApiContext = request.app.state.riskpipe
    return ctx


def _unauthorized(detail: str, error: str | None = None) -> ProblemError:
    challenge = 'Bearer realm="riskpipe"' + (f', error="{error}"' if error else "")
    return ProblemError(401, detail, headers={"WWW-Authenticate": challenge})


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal of the request's bearer token (a dependency).

    Raises:
        ProblemError: 401, no bearer token, or one the tokens file does not hold.
    """
    if credentials is None:
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    principal = context(request).tokens.authenticate(credentials.credentials)
    if principal is None:
        raise _unauthorized("the bearer token is not valid", "invalid_token")
    setattr(request.state, PRINCIPAL_KEY, principal)  # for the access log
    return principal


Context = Annotated[ApiContext, Depends(context)]
"""A route's parameter: the app's :class:`ApiContext`."""
Authenticated = Annotated[Principal, Depends(authenticated)]
"""A route's parameter: the request's principal, whatever its role."""


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's principal, if its role holds ``permission``.

    Raises:
        ProblemError: 401 as :func:`authenticated`; 403, the role lacks ``permission``.
    """

    async def permitted(principal: Authenticated) -> Principal:
        if not principal.may(permission):
            raise ProblemError(
                403, f"the role {principal.role!r} does not allow {permission.value}"
            )
        return principal

    return permitted
