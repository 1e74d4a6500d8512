"""Every error is an RFC 9457 problem, and a request refused for its body writes nothing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from riskpipe.api import PROBLEM_JSON, ROUTERS, create_app

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Any

    from support.api import Tokens

    from eventstore import EventStore
    from riskpipe.server import NatsServer

LIMIT = 1024
"""The app fixture's body limit."""


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 members of ``response``, checked to be a problem of ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    return body


async def _written(store: EventStore) -> list[int]:
    """Messages on EVIDENCE, DLQ and AUDIT: what a refused request must leave as it was."""
    config = store.config
    names = (config.stream_for("evidence"), config.stream_for("dlq"), config.stream_for("audit"))
    return [int((await store.stream_state(n))["last_seq"]) for n in names]


async def _chunks(body: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    (
        "too large, declared",
        {"json": {"reason": "x" * (2 * LIMIT)}},
        413,
        "larger than 1024 bytes",
    ),
    (
        "too large, chunked without a length",
        {
            "content": lambda: _chunks(b'{"reason": "' + b"x" * (2 * LIMIT) + b'"}'),
            "headers": {"Content-Type": "application/json"},
        },
        413,
        "larger than 1024 bytes",
    ),
    (
        "too large, under a Content-Length that lies",
        {
            "content": b'{"reason": "' + b"x" * (2 * LIMIT) + b'"}',
            "headers": {"Content-Type": "application/json", "Content-Length": "20"},
        },
        413,
        "larger than 1024 bytes",
    ),
    (
        "malformed JSON",
        {"content": b'{"reason": "x"', "headers": {"Content-Type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("unknown field", {"json": {"reason": "x", "actor": "mallory"}}, 422, "body.actor"),
    ("wrong type", {"json": {"reason": 7}}, 422, "body.reason"),
    ("blank reason", {"json": {"reason": "   "}}, 422, "body.reason"),
    ("not an object", {"json": ["reason"]}, 422, "body"),
    ("not JSON", {"content": b"reason=x", "headers": {"Content-Type": "text/plain"}}, 415, "JSON"),
]


@pytest.mark.parametrize(
    ("action", "case", "request_args", "status", "says"),
    [
        (action, *bad)
        for action in ("replay", "purge")
        for bad in BAD_BODIES
        if not (action == "replay" and bad[0] == "blank reason")  # a replay's reason may be empty
    ],
    ids=[
        f"{action}-{bad[0]}"
        for action in ("replay", "purge")
        for bad in BAD_BODIES
        if not (action == "replay" and bad[0] == "blank reason")
    ],
)
async def test_a_bad_body_is_a_problem_and_writes_nothing(  # noqa: PLR0913, PLR0917 - the table
    client: httpx.AsyncClient,
    tokens: Tokens,
    letters: dict[str, list[int]],
    store: EventStore,
    action: str,
    case: str,  # noqa: ARG001 - named in the test id
    request_args: dict[str, Any],
    status: int,
    says: str,
) -> None:
    """Too large (however sent), malformed, unknown fields, not JSON: 4xx, the letter untouched."""
    before = await _written(store)
    sequence = letters["acme"][0]
    args = {**request_args}
    if callable(args.get("content")):  # a chunked body is read once: one per test
        args["content"] = args["content"]()
    args["headers"] = {**args.get("headers", {}), **tokens.header("admin", "*")}
    got = await client.post(f"/api/dead-letters/{sequence}/{action}", **args)
    problem = _problem(got, status)
    assert says in problem["detail"]
    if status == 422:
        assert problem["errors"], "a validation problem lists its fields"
        assert all({"location", "message", "type"} == e.keys() for e in problem["errors"])
    assert await _written(store) == before
    shown = await client.get(f"/api/dead-letters/{sequence}", headers=tokens.header("admin", "*"))
    assert shown.json()["status"] == "pending"


async def test_unknown_routes_and_methods(client: httpx.AsyncClient, tokens: Tokens) -> None:
    """404 for a route that does not exist, 405 with Allow for a method a route does not take."""
    _problem(await client.get("/api/nothing-here", headers=tokens.header("admin", "*")), 404)
    _problem(await client.get("/nothing"), 404)
    wrong = await client.delete("/api/dead-letters/1", headers=tokens.header("admin", "*"))
    assert _problem(wrong, 405)["detail"].startswith("DELETE is not allowed")
    assert wrong.headers["allow"] == "GET"


async def test_invalid_parameters_are_422_with_each_field(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """A bad path or query parameter is named in the problem's ``errors``."""
    headers = tokens.header("admin", "*")
    bad = await client.get("/api/dead-letters/0", headers=headers)
    assert [e["location"] for e in _problem(bad, 422)["errors"]] == [["path", "sequence"]]
    bad = await client.get("/api/dead-letters", params={"limit": 0, "cursor": "x"}, headers=headers)
    locations = sorted(e["location"][1] for e in _problem(bad, 422)["errors"])
    assert locations == ["cursor", "limit"]
    bad = await client.get("/api/whoami", params={"as": "admin"}, headers=headers)
    assert [e["location"] for e in _problem(bad, 422)["errors"]] == [["query", "as"]]
    # a parameter given twice: which value counts is not left to the framework
    twice = [("assignee", "ann"), ("assignee", "bob"), ("limit", "5")]
    bad = await client.get("/api/cases", params=twice, headers=headers)
    errors = _problem(bad, 422)["errors"]
    assert [e["location"] for e in errors] == [["query", "assignee"]]
    assert "once" in errors[0]["message"]


@pytest.fixture
async def failing_client(store: EventStore, tokens: Tokens) -> AsyncIterator[httpx.AsyncClient]:
    """The API with one more route, which fails as a bug would."""
    broken = APIRouter(prefix="/api")

    @broken.get("/broken")
    async def fail() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app = create_app(
        store=store,
        tokens=tokens.table,
        registry=CollectorRegistry(),
        routers=(*ROUTERS, broken),
    )
    transport = httpx.ASGITransport(app=app)  # an exception that escapes the app fails the test
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


async def test_an_unexpected_exception_is_a_500_that_tells_nothing(
    failing_client: httpx.AsyncClient,
) -> None:
    """The client gets a bare 500 problem; the log gets the exception."""
    with capture_logs() as logs:
        got = await failing_client.get("/api/broken")
    problem = _problem(got, 500)
    assert "secret" not in got.text
    assert "RuntimeError" not in got.text
    assert "logged" in problem["detail"]
    (logged,) = [e for e in logs if e["event"] == "api.unhandled"]
    assert logged["path"] == "/api/broken"
    assert logged["log_level"] == "error"


async def test_nats_gone_is_503_with_retry_after(
    client: httpx.AsyncClient, tokens: Tokens, nats_server: NatsServer, store: EventStore
) -> None:
    """A store that cannot answer is a 503 problem to retry, not a 500; whoami still answers."""
    assert (await client.get("/readyz")).status_code == 200
    nats_server.kill()
    headers = tokens.header("operator", "*")
    got = await client.get("/api/dead-letters", headers=headers)
    problem = _problem(got, 503)
    assert got.headers["retry-after"] == "2"
    assert "try again" in problem["detail"]
    assert (await client.get("/api/whoami", headers=headers)).status_code == 200
    assert store.client.connected is False
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    await asyncio.to_thread(nats_server.start)  # back, so that the store closes as usual
    async with asyncio.timeout(30):
        while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - nats-py signals no reconnect
            await asyncio.sleep(0.1)
    assert (await client.get("/api/dead-letters", headers=headers)).status_code == 200
