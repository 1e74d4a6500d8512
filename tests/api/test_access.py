"""Every endpoint, every role, own and other tenant: 2xx, 401, 403 or 404 as the policy says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.api import SCOPES

from projections import DLQ_PURGED, DLQ_REPLAYED
from riskpipe.api import PROBLEM_JSON, ROLES

if TYPE_CHECKING:
    import httpx
    from support.api import Tokens

    from eventstore import EventStore

# The policy, written out by hand rather than derived from the roles table:
# (endpoint, tenant of the dead letter) -> statuses of (reviewer, operator, auditor, admin,
# producer) for the token of tenant acme, then for the token of every tenant ("*").
EXPECTED: dict[tuple[str, str | None], tuple[tuple[int, ...], tuple[int, ...]]] = {
    ("whoami", None): ((200, 200, 200, 200, 200), (200, 200, 200, 200, 200)),
    ("status", None): ((403, 403, 403, 403, 403), (403, 200, 200, 200, 403)),
    ("list", None): ((403, 200, 200, 200, 403), (403, 200, 200, 200, 403)),
    ("show", "acme"): ((403, 200, 200, 200, 403), (403, 200, 200, 200, 403)),
    ("show", "globex"): ((403, 404, 404, 404, 403), (403, 200, 200, 200, 403)),
    ("replay", "acme"): ((403, 200, 403, 200, 403), (403, 200, 403, 200, 403)),
    ("replay", "globex"): ((403, 404, 403, 404, 403), (403, 200, 403, 200, 403)),
    ("purge", "acme"): ((403, 200, 403, 200, 403), (403, 200, 403, 200, 403)),
    ("purge", "globex"): ((403, 404, 403, 404, 403), (403, 200, 403, 200, 403)),
}
WRITES = ("replay", "purge")


def _request(endpoint: str, sequence: int | None) -> tuple[str, str, dict[str, str] | None]:
    """Method, path and JSON body of ``endpoint``."""
    return {
        "whoami": ("GET", "/api/whoami", None),
        "status": ("GET", "/api/status", None),
        "list": ("GET", "/api/dead-letters", None),
        "show": ("GET", f"/api/dead-letters/{sequence}", None),
        "replay": ("POST", f"/api/dead-letters/{sequence}/replay", {"reason": "fixed"}),
        "purge": ("POST", f"/api/dead-letters/{sequence}/purge", {"reason": "junk"}),
    }[endpoint]


async def test_every_endpoint_by_role_and_tenant(
    client: httpx.AsyncClient, tokens: Tokens, letters: dict[str, list[int]], store: EventStore
) -> None:
    """The whole table; a write that is allowed gets a dead letter nobody touched yet."""
    probe = {tenant: seqs[0] for tenant, seqs in letters.items()}  # never written
    fresh = {tenant: list(seqs[1:]) for tenant, seqs in letters.items()}
    wrong: list[str] = []
    actors: dict[str, set[str]] = {"replay": set(), "purge": set()}
    for (endpoint, tenant), by_scope in EXPECTED.items():
        for scope, statuses in zip(SCOPES, by_scope, strict=True):
            for role, expected in zip(ROLES, statuses, strict=True):
                sequence = None
                if tenant is not None:
                    writes = endpoint in WRITES and expected == 200
                    sequence = fresh[tenant].pop() if writes else probe[tenant]
                method, path, body = _request(endpoint, sequence)
                got = await client.request(
                    method, path, json=body, headers=tokens.header(role, scope)
                )
                if got.status_code != expected:
                    wrong.append(f"{role}/{scope} {method} {path}: {got.status_code} {got.text}")
                elif expected != 200:
                    assert got.headers["content-type"] == PROBLEM_JSON
                    assert got.json()["status"] == expected
                elif endpoint in WRITES:
                    actors[endpoint].add(got.json()["actor"])
    assert wrong == []
    recorded: dict[str, set[str]] = {"replay": set(), "purge": set()}
    async for rec in store.read_all(stream=store.config.stream_for("audit")):
        if rec.event is not None and rec.event.type in (DLQ_REPLAYED, DLQ_PURGED):
            kind = "replay" if rec.event.type == DLQ_REPLAYED else "purge"
            recorded[kind].add((rec.event.data or {})["actor"])
    expected_actors = {
        "operator-acme (operator)",
        "admin-acme (admin)",
        "operator-all (operator)",
        "admin-all (admin)",
    }
    assert recorded == actors == {"replay": expected_actors, "purge": expected_actors}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/whoami"),
        ("GET", "/api/status"),
        ("GET", "/api/dead-letters"),
        ("GET", "/api/dead-letters/1"),
        ("POST", "/api/dead-letters/1/replay"),
        ("POST", "/api/dead-letters/1/purge"),
        ("POST", "/api/evidence"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-token", "Basic YWxpY2U6c2VjcmV0", "Bearer"]
)
async def test_no_valid_token_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, tokens: Tokens, method: str, path: str, authorization: str | None
) -> None:
    """Without a token the tokens file holds, every endpoint answers 401, asking for Bearer."""
    headers = {} if authorization is None else {"Authorization": authorization}
    got = await client.request(method, path, headers=headers, json={"reason": "x"})
    assert got.status_code == 401
    assert got.headers["www-authenticate"].startswith("Bearer ")
    assert got.headers["content-type"] == PROBLEM_JSON
    problem = got.json()
    assert problem["status"] == 401
    assert problem["instance"] == path
    assert "not-a-token" not in got.text
    assert tokens.plain["admin", "*"] not in got.text


async def test_a_tenant_token_cannot_tell_other_tenants_letters_from_gaps(
    client: httpx.AsyncClient, tokens: Tokens, letters: dict[str, list[int]], store: EventStore
) -> None:
    """Guessing every sequence: acme's letters are found, the rest look like no letter at all."""
    headers = tokens.header("operator", "acme")
    dlq_before = await store.stream_state(store.config.stream_for("dlq"))
    top = max(max(s) for s in letters.values()) + 3
    for sequence in range(1, top + 1):
        got = await client.get(f"/api/dead-letters/{sequence}", headers=headers)
        if sequence in letters["acme"]:
            assert got.status_code == 200
            assert got.json()["tenant"] == "acme"
            continue
        assert got.status_code == 404, sequence
        assert got.json()["detail"] == f"no dead letter at DLQ sequence {sequence}"
        for action in ("replay", "purge"):
            post = await client.post(
                f"/api/dead-letters/{sequence}/{action}", headers=headers, json={"reason": "x"}
            )
            assert post.status_code == 404
            assert post.json()["detail"] == f"no dead letter at DLQ sequence {sequence}"
    assert await store.stream_state(store.config.stream_for("dlq")) == dlq_before
    assert (await store.stream_state(store.config.stream_for("audit")))["messages"] == 0


async def test_lists_hold_only_the_tokens_tenants_page_by_page(
    client: httpx.AsyncClient, tokens: Tokens, letters: dict[str, list[int]]
) -> None:
    """Cursor pages of 3: each acme letter once, in order, and never one of globex."""
    for scope, seen in (
        ("acme", letters["acme"]),
        ("*", sorted(letters["acme"] + letters["globex"])),
    ):
        found: list[int] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            page = await client.get(
                "/api/dead-letters", params=params, headers=tokens.header("auditor", scope)
            )
            assert page.status_code == 200
            body = page.json()
            assert len(body["items"]) <= 3
            found += [item["dlq_sequence"] for item in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert found == seen
        assert pages == -(-len(seen) // 3)


async def test_a_replayed_letter_is_listed_as_replayed_and_refused_again(
    client: httpx.AsyncClient, tokens: Tokens, letters: dict[str, list[int]]
) -> None:
    """A second replay is a 409 problem saying by whom and as what; the filter finds it."""
    headers = tokens.header("operator", "acme")
    sequence = letters["acme"][2]
    first = await client.post(f"/api/dead-letters/{sequence}/replay", headers=headers)
    assert first.status_code == 200
    again = await client.post(f"/api/dead-letters/{sequence}/replay", headers=headers)
    assert again.status_code == 409
    problem = again.json()
    assert problem["type"] == "urn:riskpipe:problem:replay-refused"
    assert problem["replayed_as"] == first.json()["replayed_as"]
    assert problem["replayed_by"] == "operator-acme (operator)"
    replayed = await client.get("/api/dead-letters", params={"status": "replayed"}, headers=headers)
    assert [i["dlq_sequence"] for i in replayed.json()["items"]] == [sequence]
    shown = await client.get(f"/api/dead-letters/{sequence}", headers=headers)
    assert shown.json()["status"] == "replayed"
    assert shown.json()["original"] == "{broken"


async def test_a_purged_letter_is_gone(
    client: httpx.AsyncClient, tokens: Tokens, letters: dict[str, list[int]]
) -> None:
    """After a purge the letter is 404, and a second purge too."""
    headers = tokens.header("admin", "acme")
    sequence = letters["acme"][1]
    purged = await client.post(
        f"/api/dead-letters/{sequence}/purge", headers=headers, json={"reason": "test data"}
    )
    assert purged.json() == {
        "dlq_sequence": sequence,
        "purged": True,
        "actor": "admin-acme (admin)",
    }
    assert (await client.get(f"/api/dead-letters/{sequence}", headers=headers)).status_code == 404
    again = await client.post(
        f"/api/dead-letters/{sequence}/purge", headers=headers, json={"reason": "again"}
    )
    assert again.status_code == 404
