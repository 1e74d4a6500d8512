"""``/api/whoami`` and ``/api/status``.

The pipeline status counts the events of every tenant (streams, lag, the
DLQ, the accounting), and none of it can be split by tenant without reading
every stream. So it is given only to a token that sees every tenant
(``"*"``) and whose role may read it (operator, auditor, admin): a token of
some tenants only gets 403, whatever its role, since even counts would tell
it about the others.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from riskpipe.api._auth import Authenticated, Context, require
from riskpipe.api._openapi import API_PREFIX, problems
from riskpipe.api._problems import ProblemError
from riskpipe.api._roles import PERMISSIONS, ApiRole, Permission
from riskpipe.api._tokens import ALL_TENANTS, Principal
from riskpipe.status import pipeline_status

__all__ = ["StatusBody", "WhoAmI", "router"]

router = APIRouter(prefix=API_PREFIX, tags=["system"])


class WhoAmI(BaseModel):
    """The token's identity: its name, role, tenants and what the role allows."""

    name: str
    role: ApiRole
    tenants: list[str]
    """The tenants it sees, sorted; ``["*"]`` is every tenant."""
    permissions: list[Permission]


@router.get("/whoami", responses=problems())
async def whoami(principal: Authenticated) -> WhoAmI:
    """Who the bearer token is."""
    tenants = [ALL_TENANTS] if principal.tenants is None else sorted(principal.tenants)
    return WhoAmI(
        name=principal.name,
        role=principal.role,
        tenants=tenants,
        permissions=sorted(PERMISSIONS[principal.role]),
    )


class LeaseWorker(BaseModel):
    """One worker's partitions."""

    worker: str
    partitions: list[int]
    expires_at: float
    member: bool


class Leases(BaseModel):
    """Which worker holds which partition."""

    ttl: float | None
    workers: list[LeaseWorker]
    unowned: list[int]


class StatusBody(BaseModel):
    """The pipeline's status, as ``riskpipe status --json`` prints it, and its projection."""

    projection: str
    streams: dict[str, int]
    consumer: dict[str, int] | None
    checkpoint: int
    dlq_depth: int
    dlq_replayed: int
    dlq_purged: int
    evidence: int
    assessed: int
    dead_lettered: int
    pending: int
    consumer_changed: dict[str, list[Any]]
    risk_foreign: int
    risk_repeated: int
    checkpoint_refused: str | None
    foreign: dict[str, list[int]]
    evidence_replaced: str | None
    leases: Leases | None
    balanced: bool
    gap: int
    idle: bool
    unaccounted: bool


_EVERY_TENANT = (
    'the pipeline status counts the events of every tenant: it needs a token of every tenant ("*")'
)


@router.get("/status", responses=problems(403, 503))
async def status(
    principal: Annotated[Principal, Depends(require(Permission.STATUS_READ))],
    ctx: Context,
) -> StatusBody:
    """Streams, consumer lag, DLQ depth, checkpoint, lease owners and the evidence accounting."""
    if not principal.all_tenants:
        raise ProblemError(403, _EVERY_TENANT)
    found = await pipeline_status(ctx.store, ctx.projection)
    return StatusBody.model_validate(
        {
            **found.as_dict(),
            "projection": ctx.projection,
            "idle": found.idle,
            "unaccounted": found.unaccounted,
        }
    )
