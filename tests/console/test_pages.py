"""The console's pages over HTTP, in-process against a real store: sessions, CSRF, CSP, escaping.

The browser tests (test_browser.py) drive the same pages in Chromium; these
check what a browser hides: headers, cookies, refusals of forged forms.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support.api import Tokens, make_tokens
from support.console import XSS, markup_evidence
from support.pipeline import demo_run, run_worker

from projections.readmodel import Database, ReadModelReader
from riskpipe.api import create_app
from riskpipe.console import COOKIE, CSP, ConsoleOptions, sign_session
from riskpipe.readmodel import read_model
from riskpipe.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer

SECRET = b"console-test-key-console-test-key"


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    """A token of each role for tenant acme and for every tenant."""
    return make_tokens(tmp_path / "api-tokens.yaml")


@pytest.fixture
async def client(
    store: EventStore, nats_server: NatsServer, tokens: Tokens, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its console, on the demo's evidence, scored and read into the read model."""
    await demo_run(store, nats_server.url, events=120)
    await store.append(markup_evidence(1))
    await run_worker(store, nats_server.url)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'readmodel.db'}")
    settings = Settings(nats_url="nats://127.0.0.1:1")
    await read_model(store, db, settings).run(asyncio.Event(), until_idle=True)
    app = create_app(
        store=store, tokens=tokens.table, registry=CollectorRegistry(),
        reader=ReadModelReader(db), console=ConsoleOptions(secret=SECRET),
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        yield http
    await db.dispose()


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


async def _login(http: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await http.get("/console/login")
    return await http.post(
        "/console/login", data={"token": token, "csrf": _csrf(page.text), "next": "/console/"}
    )


async def test_login_sets_a_strict_httponly_cookie_and_every_page_has_the_csp(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """A session cookie that scripts cannot read nor other sites send; CSP on every page."""
    first = await client.get("/", follow_redirects=True)
    assert first.url.path == "/console/login"
    assert first.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP
    done = await _login(client, tokens.plain["reviewer", "acme"])
    assert done.status_code == 303
    cookie = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and COOKIE in v)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is set
    queue = await client.get("/console/queue")
    assert queue.status_code == 200
    assert queue.headers["content-security-policy"] == CSP
    assert queue.headers["x-frame-options"] == "DENY"
    assert "globex" not in queue.text  # an acme reviewer sees acme's cases only
    assert "acme/" in queue.text


async def test_a_bad_token_is_refused_and_a_form_without_its_csrf_token_too(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Wrong token: 401 and no session; a forged login or logout form: 403."""
    bad = await _login(client, "not-a-token")
    assert bad.status_code == 401
    assert COOKIE not in bad.headers.get("set-cookie", "")
    page = await client.get("/console/login")
    forged = await client.post(
        "/console/login",
        data={"token": tokens.plain["reviewer", "acme"], "csrf": "x" + _csrf(page.text)},
    )
    assert forged.status_code == 403
    await _login(client, tokens.plain["reviewer", "acme"])
    assert (await client.post("/console/logout", data={"csrf": "nope"})).status_code == 403
    assert (await client.get("/console/queue")).status_code == 200  # still logged in


async def test_an_expired_or_tampered_session_is_sent_to_log_in(
    client: httpx.AsyncClient,
) -> None:
    """The cookie's expiry is signed: past it, or with a bad signature, the login page."""
    expired = sign_session(SECRET, sid="s1", name="reviewer-acme", expires_at=time.time() - 1)
    client.cookies.set(COOKIE, expired, domain="console.test", path="/console")
    answer = await client.get("/console/queue")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/login?why=expired")
    live = sign_session(SECRET, sid="s2", name="reviewer-acme", expires_at=time.time() + 60)
    client.cookies.set(COOKIE, live[:-2] + "xx", domain="console.test", path="/console")
    assert (
        (await client.get("/console/queue"))
        .headers["location"]
        .startswith("/console/login?why=missing")
    )
    client.cookies.set(COOKIE, live, domain="console.test", path="/console")
    assert (await client.get("/console/queue")).status_code == 200


async def test_evidence_markup_is_text_on_the_entity_page(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """A ``<script>`` in a description and attributes comes out escaped, never as markup."""
    await _login(client, tokens.plain["reviewer", "acme"])
    page = await client.get("/console/entities/acme/user-xss")
    assert page.status_code == 200
    assert XSS not in page.text
    assert "<img src=x" not in page.text
    assert html.escape(XSS) in page.text
    assert "<script" not in page.text.replace('<script src="/console/static/console.js"', "")


async def test_roles_and_tenants_decide_what_a_session_sees(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Another tenant's entity is 404; a reviewer has no dead letters page; an operator has."""
    await _login(client, tokens.plain["reviewer", "acme"])
    assert (await client.get("/console/entities/globex/user-dave")).status_code == 404
    assert (await client.get("/console/dead-letters")).status_code == 403
    unknown = await client.get("/console/no/such/page")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("text/html")
    assert "Log out" in unknown.text  # the page knows the session
    client.cookies.clear()
    await _login(client, tokens.plain["operator", "*"])
    home = await client.get("/console/")
    assert home.headers["location"] == "/console/dead-letters"  # an operator's first page
    letters = await client.get("/console/dead-letters")
    assert letters.status_code == 200
    assert "user-mallory" in letters.text
    status = await client.get("/console/status")
    assert status.status_code == 200
    assert "every evidence event is accounted for" in status.text
    evidence = re.search(r"evidence (\d+) = assessed (\d+)", status.text)
    assert evidence is not None
    stored, assessed = int(evidence.group(1)), int(evidence.group(2))
    # everything was stored moments ago: the last minute's throughput counts all of it
    assert f"{assessed / 60:.1f} assessments/s, {stored / 60:.1f} evidence/s" in status.text


async def test_a_decision_needs_its_csrf_token_and_a_reason(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """Forged: 403 and nothing written; without a reason: 422 saying so; else decided."""
    await _login(client, tokens.plain["reviewer", "acme"])
    path = "/console/cases/acme/user-xss/1"
    page = await client.get(path)
    assert page.status_code == 200, page.text
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version is not None
    form = {"outcome": "confirmed", "reason": "", "version": version.group(1)}
    forged = await client.post(f"{path}/decide", data={**form, "csrf": "forged"})
    assert forged.status_code == 403
    empty = await client.post(f"{path}/decide", data={**form, "csrf": _csrf(page.text)})
    assert empty.status_code == 422
    assert "a reason is required" in empty.text
    assert 'value="confirmed" required checked>' in empty.text  # the choice made is kept
    stale = await client.post(
        f"{path}/comment",
        data={"text": "my <long> note", "version": "1", "csrf": _csrf(page.text)},
    )
    assert stale.status_code == 409  # the case moved on since version 1
    assert "Someone else acted on this case first" in stale.text
    assert ">my &lt;long&gt; note</textarea>" in stale.text  # nothing typed is lost
    done = await client.post(
        f"{path}/decide", data={**form, "reason": "real", "csrf": _csrf(page.text)}
    )
    assert done.status_code == 303
    decided = await client.get(done.headers["location"])
    assert decided.status_code == 200, decided.text
    assert 'class="case-status">decided<' in decided.text


async def test_over_tls_the_session_cookie_is_secure(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """A request that came over HTTPS (or a proxy saying so) gets a ``Secure`` cookie."""
    client.base_url = httpx.URL("https://console.test")
    done = await _login(client, tokens.plain["reviewer", "acme"])
    assert done.status_code == 303
    cookie = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and COOKIE in v)
    assert "Secure" in cookie


async def test_a_purge_is_confirmed_needs_a_reason_and_is_audited(
    client: httpx.AsyncClient, tokens: Tokens, store: EventStore
) -> None:
    """The confirmation page's form purges; without a reason nothing happens; AUDIT records it."""
    await _login(client, tokens.plain["operator", "*"])
    listed = await client.get("/console/dead-letters")
    seq = int(re.findall(r'data-dlq="(\d+)"', listed.text)[0])
    confirm = await client.get(f"/console/dead-letters/{seq}/purge")
    assert confirm.status_code == 200
    assert "The audit stream keeps a record of the purge" in confirm.text
    empty = await client.post(
        f"/console/dead-letters/{seq}/purge", data={"csrf": _csrf(confirm.text), "reason": " "}
    )
    assert empty.status_code == 422
    assert "A purge needs a reason." in empty.text
    done = await client.post(
        f"/console/dead-letters/{seq}/purge",
        data={"csrf": _csrf(confirm.text), "reason": "garbage from a legacy feed"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/dead-letters?done=purged-{seq}"
    assert (await client.get(f"/console/dead-letters/{seq}")).status_code == 404
    purges = [
        rec.event.data or {}
        async for rec in store.read_all(stream="AUDIT")
        if rec.event is not None and rec.event.type == "riskpipe.dlq.purged.v1"
    ]
    assert [(p["actor"], p["reason"]) for p in purges] == [
        ("operator-all (operator)", "garbage from a legacy feed")
    ]


def _queue_rows(page: str) -> list[tuple[str, str]]:
    """(case, level) of each row of a queue page, in order."""
    row = r'<tr data-case="([^"]+)">\s*<td>.*?</td>\s*<td><span class="level level-(\w+)"'
    return re.findall(row, page, re.DOTALL)


def _queue_counts(page: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-level="(\w+)">(\d+)<', page)}


async def test_the_queue_filters_pages_and_counts_every_matching_case(
    client: httpx.AsyncClient, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts by level are of every case the filters match, not of one page; pages follow on."""
    monkeypatch.setattr("riskpipe.console._cases._QUEUE_PAGE", 2)
    waiting: list[dict[str, object]] = []
    for status in ("open", "escalated"):
        answer = await client.get(
            f"/api/cases?status={status}&limit=500", headers=tokens.header("reviewer", "*")
        )
        waiting += answer.json()["items"]
    by_level: dict[str, int] = {}
    for case in waiting:
        by_level[str(case["level"])] = by_level.get(str(case["level"]), 0) + 1
    assert len(waiting) > 2
    await _login(client, tokens.plain["reviewer", "*"])
    first = await client.get("/console/queue")
    assert first.status_code == 200
    counts = _queue_counts(first.text)
    assert counts.pop("all") == len(waiting)
    assert {k: v for k, v in counts.items() if v} == by_level
    assert len(_queue_rows(first.text)) == 2  # one page, yet the counts are of them all
    seen, page = [], first
    while True:
        seen += [case for case, _ in _queue_rows(page.text)]
        more = re.search(r'href="([^"]+)" id="next-page"', page.text)
        if more is None:
            break
        page = await client.get(html.unescape(more.group(1)))
        assert _queue_counts(page.text)["all"] == len(waiting)
    opened = sorted(waiting, key=lambda c: (str(c["opened_at"]), str(c["case"])))
    assert seen == [c["case"] for c in opened]
    level = max(by_level, key=lambda lv: by_level[lv])
    monkeypatch.setattr("riskpipe.console._cases._QUEUE_PAGE", 500)
    only = await client.get(f"/console/queue?level={level}")
    assert {lv for _, lv in _queue_rows(only.text)} == {level}
    assert len(_queue_rows(only.text)) == by_level[level]
    assert f"{by_level[level]} case" in only.text
    assert _queue_rows((await client.get("/console/queue?age=7d")).text) == []
    acme = await client.get("/console/queue?tenant=acme")
    assert {case.split(".")[0] for case, _ in _queue_rows(acme.text)} == {"acme"}
    assert _queue_counts(acme.text)["all"] == sum(1 for c in waiting if c["tenant"] == "acme")
    nobody = await client.get("/console/queue?assignee=rita")
    assert _queue_rows(nobody.text) == []
    assert _queue_counts(nobody.text)["all"] == 0
    client.cookies.clear()
    await _login(client, tokens.plain["reviewer", "acme"])
    assert _queue_counts((await client.get("/console/queue?tenant=globex")).text)["all"] == 0


async def test_a_form_too_large_or_a_wrong_method_is_an_error_page_not_json(
    client: httpx.AsyncClient, tokens: Tokens
) -> None:
    """The API's problems under /console come as the console's page, same status and headers."""
    await _login(client, tokens.plain["reviewer", "acme"])
    path = "/console/cases/acme/user-xss/1"
    page = await client.get(path)
    huge = await client.post(
        f"{path}/comment", data={"text": "x" * 2_000_000, "version": "1", "csrf": _csrf(page.text)}
    )
    assert huge.status_code == 413
    assert huge.headers["content-type"].startswith("text/html")
    assert huge.headers["content-security-policy"] == CSP
    # the standard phrase: "Request Entity Too Large", "Content Too Large" from Python 3.13
    assert f"<h1>{HTTPStatus(413).phrase}</h1>" in huge.text
    assert "larger than 65536 bytes" in huge.text
    assert "x" * 100 not in huge.text
    wrong = await client.put("/console/queue", content=b"")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"].startswith("text/html")
    json = await client.post("/console/logout", json={"csrf": _csrf(page.text)})
    assert json.status_code == 400  # a form is a form
    assert (await client.get("/console/queue")).status_code == 200  # and nothing was done
    api = await client.post("/api/cases", content=b"x" * 70_000)
    assert api.headers["content-type"] == "application/problem+json"  # the API is unchanged
