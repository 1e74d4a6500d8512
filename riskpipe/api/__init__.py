"""The HTTP API (``riskpipe api``): dead letters and pipeline status, by token, role and tenant.

See docs/api.md. :func:`create_app` builds the ASGI app; the tokens file is
read by :func:`load_tokens` and written by :func:`add_token`; the one table
of who may do what is :data:`PERMISSIONS`.
"""

from riskpipe.api._app import API_PREFIX, ROUTERS, create_app
from riskpipe.api._auth import ApiContext, authenticated, context, require
from riskpipe.api._limits import DEFAULT_MAX_BODY_BYTES
from riskpipe.api._problems import PROBLEM_JSON, Problem, ProblemError
from riskpipe.api._roles import PERMISSIONS, ROLES, ApiRole, Permission, allows
from riskpipe.api._tokens import (
    ALL_TENANTS,
    Principal,
    TokenEntry,
    TokensFileError,
    TokenTable,
    add_token,
    hash_token,
    load_tokens,
)

__all__ = [
    "ALL_TENANTS",
    "API_PREFIX",
    "DEFAULT_MAX_BODY_BYTES",
    "PERMISSIONS",
    "PROBLEM_JSON",
    "ROLES",
    "ROUTERS",
    "ApiContext",
    "ApiRole",
    "Permission",
    "Principal",
    "Problem",
    "ProblemError",
    "TokenEntry",
    "TokenTable",
    "TokensFileError",
    "add_token",
    "allows",
    "authenticated",
    "context",
    "create_app",
    "hash_token",
    "load_tokens",
    "require",
]
