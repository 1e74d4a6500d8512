"""The OpenAPI document: every error is a problem, sent as ``application/problem+json``."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi.openapi.utils import get_openapi

from riskpipe.api._problems import PROBLEM_JSON, Problem

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["API_PREFIX", "problem_openapi", "problems"]

API_PREFIX = "/api"
"""Where every route of the API lives: a router's prefix starts with it."""

COMMON = (400, 401, 413, 415, 500)
"""What any route may answer: malformed, no token, too large, not JSON, a fault."""


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that may answer ``statuses`` (and :data:`COMMON`)."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase}
        for status in sorted({*COMMON, *statuses})
    }


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, with every 4xx and 5xx answered as ``application/problem+json``.

    FastAPI files a response model under ``application/json``; a problem is
    sent as ``application/problem+json``, and the document says so.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in {"4", "5"} and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
    app.openapi_schema = schema
    return schema
