"""``/api/cases`` by role and tenant: list, show, assign, comment, decide with If-Match, reopen."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from support.events import evidence
from support.pipeline import run_worker

from projections.review import read_cases

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx
    from support.api import Tokens

    from eventstore import EventStore
    from riskpipe.server import NatsServer


@pytest.fixture
async def cases(
    store: EventStore, nats_server: NatsServer, follow: Callable[[], Awaitable[None]]
) -> None:
    """An open case for acme/a1 and globex/g1 (four critical evidence each), in the read model."""
    for tenant, entity in (("acme", "a1"), ("globex", "g1")):
        for n in range(4):
            await store.append(
                evidence(f"{entity}-{n}", tenant=tenant, entity=entity, severity="critical")
            )
    await run_worker(store, nats_server.url)
    await follow()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.usefixtures("cases")
async def test_a_reviewer_sees_only_its_tenants_cases_not_even_counts(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Acme's reviewer lists one case, reads it, and finds globex's as if it did not exist."""
    acme = tokens.header("reviewer", "acme")
    listed = await client.get("/api/cases", headers=acme)
    assert listed.status_code == 200, listed.text
    assert [item["case"] for item in listed.json()["items"]] == ["acme.a1.1"]
    other = await client.get("/api/cases", params={"tenant": "globex"}, headers=acme)
    assert other.json() == {"items": [], "next_cursor": None}
    shown = await client.get("/api/cases/acme/a1/1", headers=acme)
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert shown.headers["etag"] == f'"{detail["version"]}"'
    reviews = [item for item in detail["timeline"] if item["kind"] == "review"]
    assessments = [item for item in detail["timeline"] if item["kind"] == "assessment"]
    assert reviews[0]["type"] == "riskpipe.review.opened.v1"
    assert assessments[0]["sequence"] == detail["assessment_sequence"]
    assert len(assessments) >= 2, "the later assessments joined the case's timeline"
    assert sum(detail["contributions"].values()) == pytest.approx(detail["latest_score"])
    hidden = await client.get("/api/cases/globex/g1/1", headers=acme)
    missing = await client.get("/api/cases/acme/nobody/1", headers=acme)
    assert _problem(hidden, 404)["detail"] == "no case 1 for entity g1 of tenant globex"
    assert _problem(missing, 404)["detail"] == "no case 1 for entity nobody of tenant acme"
    everyone = await client.get("/api/cases", headers=tokens.header("auditor", "*"))
    assert len(everyone.json()["items"]) == 2


_READS = {"reviewer", "auditor", "admin"}
_WRITES = {"reviewer", "admin"}


@pytest.mark.usefixtures("cases")
@pytest.mark.parametrize("target", ["acme", "globex"])
@pytest.mark.parametrize("scope", ["acme", "*"])
@pytest.mark.parametrize("role", ["reviewer", "operator", "auditor", "admin", "producer"])
async def test_every_case_route_by_role_and_tenant(
    client: httpx.AsyncClient, tokens: Tokens, role: str, scope: str, target: str
) -> None:
    """Each route for each role, on its own tenant's case and on another's.

    A role without the permission: 403. With it, a case of a tenant the token
    does not see: 404, as one that does not exist (the list: empty). Else
    the route works: list, latest, one case, assign, comment, decide, reopen.
    No token: 401.
    """
    headers = tokens.header(role, scope)  # type: ignore[arg-type]
    entity = {"acme": "a1", "globex": "g1"}[target]
    case = f"/api/cases/{target}/{entity}"
    sees = scope in {"*", target}
    read = 403 if role not in _READS else 200 if sees else 404
    write = 403 if role not in _WRITES else 200 if sees else 404

    listed = await client.get("/api/cases", params={"tenant": target}, headers=headers)
    assert listed.status_code == (403 if role not in _READS else 200), listed.text
    if listed.status_code == 200:
        assert len(listed.json()["items"]) == (1 if sees else 0)
    assert (await client.get(case, headers=headers)).status_code == read
    assert (await client.get(f"{case}/1", headers=headers)).status_code == read

    async def etag() -> str:
        return (await client.get(f"{case}/1", headers=tokens.header("admin", "*"))).headers["etag"]

    actions = [
        ("assign", {"assignee": "ana"}, False),
        ("comment", {"text": "looking"}, False),
        ("decide", {"outcome": "false_positive", "reason": "benign"}, True),
        ("reopen", {"reason": "new evidence"}, True),
    ]
    for action, body, fenced in actions:
        fence = {"If-Match": await etag()} if fenced else {}
        done = await client.post(f"{case}/1/{action}", json=body, headers={**headers, **fence})
        assert done.status_code == write, (action, done.text)
    for path in ("/api/cases", case, f"{case}/1"):
        anonymous = await client.get(path)
        assert _problem(anonymous, 401)["status"] == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.usefixtures("cases")
async def test_decide_needs_the_current_etag(
    client: httpx.AsyncClient,
    tokens: Tokens,
    store: EventStore,
    follow: Callable[[], Awaitable[None]],
) -> None:
    """No If-Match: 422. A stale one: 412. The current one: decided, by the token's name."""
    headers = tokens.header("reviewer", "acme")
    decision = {"outcome": "confirmed", "reason": "account takeover"}
    url = "/api/cases/acme/a1/1/decide"
    missing = _problem(await client.post(url, json=decision, headers=headers), 422)
    assert "if-match" in str(missing["errors"]).lower()
    etag = (await client.get("/api/cases/acme/a1/1", headers=headers)).headers["etag"]
    moved = await client.post(
        "/api/cases/acme/a1/1/assign", json={"assignee": "ana"}, headers=headers
    )
    assert moved.status_code == 200, moved.text
    stale = _problem(
        await client.post(url, json=decision, headers={**headers, "If-Match": etag}), 412
    )
    assert stale["version"] == int(moved.headers["etag"].strip('"'))
    decided = await client.post(
        url, json=decision, headers={**headers, "If-Match": moved.headers["etag"]}
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "decided"
    assert decided.json()["decided_by"] == "reviewer-acme (reviewer)"
    again = await client.post(
        url, json=decision, headers={**headers, "If-Match": decided.headers["etag"]}
    )
    assert _problem(again, 409)["type"] == "urn:riskpipe:problem:case-state"
    cases = await read_cases(store, "acme", "a1")
    assert [e.type.split(".")[2] for e in cases.cases[0].timeline] == [
        "opened", "assigned", "decided",
    ]  # fmt: skip
    await follow()  # the list reads the read model: once it follows, the decision shows
    listed = await client.get("/api/cases", params={"status": "decided"}, headers=headers)
    assert [(i["case"], i["outcome"]) for i in listed.json()["items"]] == [
        ("acme.a1.1", "confirmed"),
    ]


@pytest.mark.usefixtures("cases")
async def test_two_decisions_with_the_same_etag_store_exactly_one(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """Sent at once with one version: one 200, the other 412 or 409; one decided event."""
    headers = tokens.header("reviewer", "acme")
    etag = (await client.get("/api/cases/acme/a1/1", headers=headers)).headers["etag"]
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/cases/acme/a1/1/decide",
                json={"outcome": outcome, "reason": "seen it"},
                headers={**headers, "If-Match": etag},
            )
            for outcome in ("confirmed", "false_positive")
        )
    )
    assert min(a.status_code for a in answers) == 200
    assert sorted(a.status_code for a in answers)[1] in {409, 412}
    decided = [
        e for e in (await read_cases(store, "acme", "a1")).cases[0].timeline
        if e.type.endswith("decided.v1")
    ]  # fmt: skip
    assert len(decided) == 1


@pytest.mark.usefixtures("cases")
async def test_bad_bodies_are_problems_and_write_nothing(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """Unknown fields, a blank reason, an unknown outcome, malformed JSON: 4xx, no event."""
    headers = tokens.header("reviewer", "acme")
    before = (await read_cases(store, "acme", "a1")).version
    url = "/api/cases/acme/a1/1/decide"
    fenced = {**headers, "If-Match": f'"{before}"'}
    for body, status in (
        ({"outcome": "confirmed", "reason": "x" * 5000}, 413),  # over the 1 KiB body limit
        ({"outcome": "confirmed", "reason": "x", "by": "mallory"}, 422),
        ({"outcome": "confirmed", "reason": "   "}, 422),
        ({"outcome": "maybe", "reason": "x"}, 422),
    ):
        _problem(await client.post(url, json=body, headers=fenced), status)
    malformed = await client.post(
        url, content=b'{"outcome": ', headers={**fenced, "Content-Type": "application/json"}
    )
    _problem(malformed, 400)
    _problem(await client.post(url, json={"outcome": "confirmed", "reason": "x"},
                               headers={**headers, "If-Match": "yesterday"}), 422)  # fmt: skip
    assert (await read_cases(store, "acme", "a1")).version == before


@pytest.mark.usefixtures("cases")
async def test_pages_follow_the_cursor_and_filters_apply(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Two cases one per page; status, level and assignee filters; a forged cursor is 422."""
    headers = tokens.header("admin", "*")
    first = (await client.get("/api/cases", params={"limit": 1}, headers=headers)).json()
    assert len(first["items"]) == 1
    second = await client.get(
        "/api/cases", params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers
    )
    assert second.json()["next_cursor"] is None
    keys = [first["items"][0]["case"], second.json()["items"][0]["case"]]
    assert sorted(keys) == ["acme.a1.1", "globex.g1.1"]
    decided = await client.get("/api/cases", params={"status": "decided"}, headers=headers)
    assert decided.json()["items"] == []
    nobody = await client.get("/api/cases", params={"assignee": "zed"}, headers=headers)
    assert nobody.json()["items"] == []
    _problem(await client.get("/api/cases", params={"cursor": "!!"}, headers=headers), 422)
    made_up = await client.get("/api/cases", params={"cursor": "0-xx"}, headers=headers)
    assert len(made_up.json()["items"]) == 2, "a made-up cursor of the right shape pages from it"
    _problem(await client.get("/api/cases", params={"level": "severe"}, headers=headers), 422)
