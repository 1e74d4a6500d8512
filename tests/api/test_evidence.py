"""``POST /api/evidence`` on a real store: roles and tenants, per-event results, unusable bodies."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from support.api import SCOPES
from support.events import evidence

from eventstore.errors import DecodeError
from riskpipe.api import PROBLEM_JSON, ROLES, create_app
from riskpipe.ingest import NotEvidenceError, publishable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry
    from support.api import Tokens

    from eventstore import EventStore
    from riskpipe.server import NatsServer

PATH = "/api/evidence"
NDJSON = "application/x-ndjson"
EVIDENCE_LIMIT = 16 * 1024


def _event(event_id: str, tenant: str = "acme", **kwargs: Any) -> dict[str, Any]:
    """An evidence event as a producer posts it."""
    event: dict[str, Any] = evidence(event_id, tenant=tenant, **kwargs).to_json_dict()
    return event


def _ndjson(*lines: dict[str, Any] | str) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()


@pytest.fixture
def app(store: EventStore, tokens: Tokens, registry: CollectorRegistry) -> FastAPI:
    """The API with an evidence body limit of 16 KiB (other routes: 1 KiB)."""
    return create_app(
        store=store,
        tokens=tokens.table,
        registry=registry,
        max_body_bytes=1024,
        max_evidence_bytes=EVIDENCE_LIMIT,
    )


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Real HTTP requests into the ASGI app (no socket)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["instance"] == PATH
    return body


async def _stored(store: EventStore) -> int:
    state = await store.stream_state(store.config.stream_for("evidence"))
    return int(state["messages"])


# role -> status for the token of tenant acme and of every tenant, posting one acme event
EXPECTED = {"reviewer": 403, "operator": 403, "auditor": 403, "admin": 403, "producer": 200}


async def test_only_a_producer_records_and_only_for_its_tenants(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """Every role and scope posts an acme event and a globex one; only producers record.

    A producer of acme gets the acme event stored and the globex one
    rejected, per event; a producer of every tenant gets both stored. Every
    other role is 403, nothing stored; no token is 401.
    """
    assert set(EXPECTED) == set(ROLES)
    for role in ROLES:
        for scope in SCOPES:
            body = [_event(f"{role}-{scope}-a"), _event(f"{role}-{scope}-g", tenant="globex")]
            got = await client.post(PATH, json=body, headers=tokens.header(role, scope))
            if EXPECTED[role] != 200:
                assert "evidence:write" in _problem(got, 403)["detail"]
                continue
            assert got.status_code == 200, got.text
            answer = got.json()
            results = [item["result"] for item in answer["items"]]
            if scope == "*":
                assert results == ["stored", "stored"]
                continue
            assert results == ["stored", "rejected"]
            refused = answer["items"][1]
            assert refused["reason"] == "the token may not record evidence of tenant 'globex'"
            assert refused["error"] == "TenantNotAllowedError"
            assert refused["sequence"] is None
            assert (answer["stored"], answer["duplicates"], answer["rejected"]) == (1, 0, 1)
    assert await _stored(store) == 3  # acme's producer: 1; every tenant's producer: 2
    anonymous = await client.post(PATH, json=[_event("anon")])
    _problem(anonymous, 401)
    assert await _stored(store) == 3


async def test_idempotent_within_a_request_and_across_requests(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore, registry: CollectorRegistry
) -> None:
    """The same source and id twice in one request, then the whole request again: stored once."""
    headers = tokens.header("producer", "acme")
    body = [_event("e-1"), _event("e-1", severity="low"), _event("e-2")]
    first = await client.post(PATH, json=body, headers=headers)
    assert first.status_code == 200, first.text
    items = first.json()["items"]
    assert [i["result"] for i in items] == ["stored", "duplicate", "stored"]
    assert items[1]["sequence"] == items[0]["sequence"]
    assert [i["index"] for i in items] == [0, 1, 2]
    assert [(i["source"], i["id"]) for i in items] == [("test-src", f"e-{n}") for n in (1, 1, 2)]
    again = await client.post(PATH, json=body, headers=headers)
    assert [i["result"] for i in again.json()["items"]] == ["duplicate"] * 3
    assert [i["sequence"] for i in again.json()["items"]] == [i["sequence"] for i in items]
    assert await _stored(store) == 2
    count = registry.get_sample_value
    assert count("riskpipe_api_evidence_items_total", {"result": "stored"}) == 2
    assert count("riskpipe_api_evidence_items_total", {"result": "duplicate"}) == 4
    assert count("riskpipe_api_evidence_items_total", {"result": "rejected"}) == 0


async def test_ndjson_a_malformed_line_is_one_rejected_event_with_its_line(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """Blank lines are skipped; a broken line is rejected with publish's own reason."""
    broken = '{"id": "x", "source": '
    wrong_type = {**_event("t-1"), "type": "com.example.other.v1"}
    body = _ndjson(_event("n-1"), "", broken, wrong_type, _event("n-2", severity="apocalyptic"))
    body += b"\r\n" + _ndjson(_event("n-3")) + b"\n"
    got = await client.post(
        PATH, content=body, headers={**tokens.header("producer", "acme"), "Content-Type": NDJSON}
    )
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert [(i["index"], i["line"], i["result"]) for i in items] == [
        (0, 1, "stored"),
        (1, 3, "rejected"),
        (2, 4, "rejected"),
        (3, 5, "rejected"),
        (4, 6, "stored"),
    ]
    schemas, limit = store.schemas, store.config.max_payload_bytes
    for item, line in zip(items[1:4], body.split(b"\n")[2:5], strict=True):
        with pytest.raises((DecodeError, NotEvidenceError)) as raised:  # what publish says
            publishable(schemas, line.rstrip(b"\r"), max_bytes=limit)
        assert item["reason"] == str(raised.value)
        assert item["error"] == type(raised.value).__name__
    assert items[1]["error"] == "MalformedJSONError"
    assert items[2]["error"] == "UnknownEventTypeError"
    assert "severity" in items[3]["reason"]
    assert await _stored(store) == 2


async def test_array_items_get_publish_reasons(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """An item that is not an object, or not valid, is rejected alone; the others are stored."""
    no_subject = {k: v for k, v in _event("a-2").items() if k != "subject"}
    body = [_event("a-1"), [1, 2], no_subject, "text", _event("a-3")]
    got = await client.post(PATH, json=body, headers=tokens.header("producer", "acme"))
    items = got.json()["items"]
    assert [i["result"] for i in items] == ["stored", *["rejected"] * 3, "stored"]
    assert items[1]["reason"] == "an event must be a JSON object, not list"
    assert items[2]["error"] == "SchemaViolationError"
    assert "subject" in items[2]["reason"]
    assert all(i["line"] is None for i in items)
    assert await _stored(store) == 2


@pytest.mark.parametrize(
    ("tenant", "entity"),
    [
        ("acme.globex", "e1"),
        ("acme", "e1.>"),
        ("acme", "*"),
        ("acme", "e 1"),
        ("acme", "e1\r\nNats-Msg-Id: x"),
        ("*", "e1"),
        (">", "e1"),
        ("acme", ""),
        ("acme", "é" * 200),
    ],
)
async def test_hostile_tenant_and_entity_are_rejected_never_stored(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore, tenant: str, entity: str
) -> None:
    """Subject wildcards, separators, whitespace, headers smuggled in: rejected as invalid."""
    hostile = {**_event("h-1"), "tenant": tenant, "subject": entity}
    got = await client.post(
        PATH, json=[hostile, _event("h-2")], headers=tokens.header("producer", "*")
    )
    assert got.status_code == 200, got.text
    bad, good = got.json()["items"]
    assert bad["result"] == "rejected"
    assert bad["error"] == "SchemaViolationError"
    assert good["result"] == "stored"
    assert await _stored(store) == 1


async def test_another_tenants_id_is_not_reported_as_a_duplicate(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Acme's producer reuses the source and id of a globex event: rejected, no sequence shown."""
    theirs = await client.post(
        PATH, json=[_event("shared", tenant="globex")], headers=tokens.header("producer", "*")
    )
    assert theirs.json()["items"][0]["result"] == "stored"
    mine = await client.post(
        PATH, json=[_event("shared"), _event("own")], headers=tokens.header("producer", "acme")
    )
    taken, own = mine.json()["items"]
    assert taken["result"] == "rejected"
    assert taken["error"] == "IdTakenError"
    assert taken["sequence"] is None
    assert "globex" not in mine.text
    assert own["result"] == "stored"
    again = await client.post(PATH, json=[_event("own")], headers=tokens.header("producer", "acme"))
    assert again.json()["items"][0]["result"] == "duplicate"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "detail"),
    [
        (b"", "application/json", 400, "empty"),
        (b"  \n", NDJSON, 400, "empty"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"id": "x"}', "application/json", 400, "must be a JSON array"),
        (b'[{"a": 1, "a": 2}]', "application/json", 400, "duplicate key"),
        (b"[]", "text/plain", 415, "application/x-ndjson"),
        (b"[]", "application/xml", 415, "must be JSON"),
        (b"[" + b"[" * 40 + b"]" * 41, "application/json", 400, "nest"),
    ],
)
async def test_an_unusable_body_is_a_problem(  # noqa: PLR0913, PLR0917 - one parameter per column
    client: httpx.AsyncClient,
    tokens: Tokens,
    store: EventStore,
    content: bytes,
    content_type: str,
    status: int,
    detail: str,
) -> None:
    """Empty, not JSON, not an array, strictness, another media type: 4xx, nothing stored."""
    headers = {**tokens.header("producer", "acme"), "Content-Type": content_type}
    got = await client.post(PATH, content=content, headers=headers)
    assert detail in _problem(got, status)["detail"]
    assert await _stored(store) == 0


@pytest.mark.parametrize("ndjson", [True, False])
async def test_more_than_a_thousand_events_is_413(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore, *, ndjson: bool
) -> None:
    """Tiny items by the thousand would ask for an answer far larger than the body: refused."""
    body = b"1\n" * 1001 if ndjson else b"[" + b",".join([b"1"] * 1001) + b"]"
    headers = {
        **tokens.header("producer", "acme"),
        "Content-Type": NDJSON if ndjson else "application/json",
    }
    got = await client.post(PATH, content=body, headers=headers)
    assert "1000 events at most" in _problem(got, 413)["detail"]
    fits = await client.post(
        PATH, content=body[: -2 if ndjson else -3] + (b"" if ndjson else b"]"), headers=headers
    )
    assert fits.json()["rejected"] == 1000
    assert await _stored(store) == 0


async def test_an_empty_array_is_an_empty_answer(client: httpx.AsyncClient, tokens: Tokens) -> None:
    """``[]`` is a batch of nothing: 200, no items."""
    got = await client.post(PATH, json=[], headers=tokens.header("producer", "acme"))
    assert got.json() == {"stored": 0, "duplicates": 0, "rejected": 0, "items": []}


async def test_an_oversized_body_is_413_before_the_token_is_looked_at(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """Past the evidence limit: 413, declared or streamed; the limit is the evidence route's own."""
    events = [_event(f"big-{n}") for n in range(200)]
    body = json.dumps(events).encode()
    assert len(body) > EVIDENCE_LIMIT
    for headers in ({}, tokens.header("producer", "acme")):
        got = await client.post(
            PATH, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert "16384 bytes" in _problem(got, 413)["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    streamed = await client.post(
        PATH,
        content=chunks(),
        headers={**tokens.header("producer", "acme"), "Content-Type": "application/json"},
    )
    _problem(streamed, 413)
    assert await _stored(store) == 0
    fits = json.dumps(events[:20]).encode()
    assert 1024 < len(fits) <= EVIDENCE_LIMIT  # over the other routes' limit, under this one's
    got = await client.post(
        PATH,
        content=fits,
        headers={**tokens.header("producer", "acme"), "Content-Type": "application/json"},
    )
    assert got.json()["stored"] == 20


async def test_an_event_over_the_payload_limit_is_rejected_alone(
    store: EventStore, tokens: Tokens, registry: CollectorRegistry
) -> None:
    """An event larger than the store takes, in a body the API reads: rejected, as publish says."""
    app = create_app(store=store, tokens=tokens.table, registry=registry)  # 1 MiB of evidence
    huge = _event("huge", description="x" * (store.config.max_payload_bytes + 1))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        got = await http.post(
            PATH, json=[huge, _event("small")], headers=tokens.header("producer", "*")
        )
    assert got.status_code == 200, got.text
    big, small = got.json()["items"]
    assert (big["result"], big["error"]) == ("rejected", "PayloadTooLargeError")
    assert small["result"] == "stored"
    assert await _stored(store) == 1


async def test_nats_down_is_503_and_nothing_is_reported_stored(
    client: httpx.AsyncClient, tokens: Tokens, nats_server: NatsServer, store: EventStore
) -> None:
    """NATS gone: a 503 problem to retry, no per-event results; once back, the retry stores."""
    headers = tokens.header("producer", "acme")
    body = [_event("down-1"), _event("down-2")]
    nats_server.kill()
    got = await client.post(PATH, json=body, headers=headers)
    problem = _problem(got, 503)
    assert got.headers["retry-after"] == "2"
    assert "items" not in problem
    rejected_only = await client.post(PATH, json=[{"broken": True}], headers=headers)
    assert rejected_only.json()["items"][0]["result"] == "rejected"  # nothing to send: answered
    await asyncio.to_thread(nats_server.start)
    async with asyncio.timeout(30):
        while not store.client.connected:  # noqa: ASYNC110 - nats-py signals no reconnect
            await asyncio.sleep(0.1)
    again = await client.post(PATH, json=body, headers=headers)
    assert [i["result"] for i in again.json()["items"]] == ["stored", "stored"]
