"""The console end to end in headless Chromium, against real NATS, a real worker and `riskpipe api`.

One server, worker and API process serve the whole module; each test logs
in through the login form as a person would. Every page visited is saved as
a screenshot (to ``$RISKPIPE_CONSOLE_SCREENSHOTS``, else a temporary
directory) and checked with axe-core, at 1280 and at 390 pixels wide: no
serious or critical accessibility violation.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from support.api import ApiProcess, Tokens, make_tokens
from support.console import XSS, XSS_ENTITY, markup_evidence, plain_evidence
from support.pipeline import WorkerProcess, demo_run, run_worker
from support.reputation_server import Reply, ReputationServer
from support.tools import require_tool

from eventstore import EventStore
from projections import DeadLetterQueue
from projections.review import DECIDED
from riskpipe.console import COOKIE, sign_session
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

AXE = "axe-core@4.14.1"
SECRET = "browser-test-console-key-0123456789"  # noqa: S105 - a test key
REPLAY_ENTITY = "user-replay"
WIDE, NARROW = 1280, 390
_WAIT = 30.0


@dataclass
class Stack:
    """What the module's tests run against."""

    nats_url: str
    api: ApiProcess
    worker: WorkerProcess
    tokens: Tokens
    shots: Path

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.api.url

    def call(self, role: str, scope: str, path: str) -> Any:
        """GET ``path`` of the API with the token of ``role`` and ``scope``."""
        answer = httpx.get(self.url + path, headers=self.tokens.header(role, scope), timeout=10)
        answer.raise_for_status()
        return answer.json()

    def store(self, work: Callable[[EventStore], Awaitable[Any]]) -> Any:
        """Run ``work`` on a store connection of its own."""

        async def run() -> Any:
            es = await EventStore.connect(
                self.nats_url, schemas=build_schemas(), config=topology_config()
            )
            try:
                return await work(es)
            finally:
                await es.close()

        return asyncio.run(run())


def _until(what: str, check: Callable[[], Any], timeout: float = _WAIT) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


async def _seed(url: str) -> None:
    """Provision; a replayable dead letter (its enrichment was down); the demo; markup evidence."""
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.provision()
        reputation = ReputationServer()
        await reputation.start()
        try:
            reputation.script(*[Reply(status=503, body=b"{}")] * 10)
            await store.append(plain_evidence(1, tenant="acme", entity=REPLAY_ENTITY))
            await run_worker(
                store, url, enrichment_url=reputation.url, enrichment_attempts=1,
                retry_attempts=1, max_deliver=2, redelivery_backoff_seconds=(0.1,),
            )  # fmt: skip
        finally:
            await reputation.stop()
        await demo_run(store, url, events=120)
        await store.append(markup_evidence(1))
    finally:
        await store.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """NATS, the seeded log, a worker process and ``riskpipe api`` with the console."""
    require_tool("chromium")
    require_tool("chromedriver")
    folder = tmp_path_factory.mktemp("console")
    server = NatsServer(data_dir=folder / "nats")
    server.start()
    worker = api = None
    try:
        asyncio.run(_seed(server.url))
        worker = WorkerProcess(server.url)
        worker.start()
        tokens = make_tokens(folder / "api-tokens.yaml")
        api = ApiProcess(server.url, tokens.path, env={"RISKPIPE_CONSOLE_SECRET": SECRET})
        shots = Path(os.environ.get("RISKPIPE_CONSOLE_SCREENSHOTS") or folder / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        ready = Stack(server.url, api, worker, tokens, shots)

        def settled() -> bool:
            status = ready.call("admin", "*", "/api/status")
            cases = ready.call("reviewer", "*", "/api/cases?status=open")["items"]
            return status["pending"] == 0 and any(c["entity"] == XSS_ENTITY for c in cases)

        _until("the log assessed and read into the read model", settled)
        yield ready
    finally:
        if api is not None:
            api.stop()
        if worker is not None:
            worker.stop()
        server.kill()


@pytest.fixture(scope="session")
def axe_source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """axe-core's script, from the npm registry (npm's cache keeps it after the first run)."""
    npm = require_tool("npm")
    folder = tmp_path_factory.mktemp("axe")
    packed = subprocess.run(
        [npm, "pack", AXE, "--pack-destination", str(folder), "--silent"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode()


def _chrome() -> webdriver.Chrome:
    options = Options()
    options.binary_location = require_tool("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDE},900"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(require_tool("chromedriver")), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module (cookies cleared by each test's login)."""
    driver = _chrome()
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """A person at the console: log in, go to pages, look at them."""

    def __init__(self, driver: webdriver.Chrome, stack: Stack, axe: str) -> None:
        self.driver = driver
        self.stack = stack
        self.axe = axe

    def login(self, role: str, scope: str) -> None:
        """Log in through the form with the token of ``role`` and ``scope``."""
        self.driver.delete_all_cookies()
        self.go("/console/login")
        self.driver.find_element(By.ID, "token").send_keys(self.stack.tokens.plain[role, scope])
        self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait(lambda d: "/console/login" not in d.current_url)

    def go(self, path: str) -> None:
        """Open ``path`` of the console."""
        self.driver.get(self.stack.url + path)

    def wait(self, check: Callable[[webdriver.Chrome], Any]) -> Any:
        """Wait for ``check`` to hold on the page."""
        return WebDriverWait(self.driver, _WAIT).until(check)

    def text(self, css: str = "body") -> str:
        """The visible text of the first element matching ``css``."""
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def look(self, name: str) -> None:
        """Save screenshots of the page and check it with axe-core, wide and narrow."""
        for width in (WIDE, NARROW):
            self.driver.set_window_size(width, 900)
            height = self.driver.execute_script("return document.body.scrollHeight")
            self.driver.set_window_size(width, min(max(int(height) + 120, 600), 4000))
            self.driver.save_screenshot(str(self.stack.shots / f"{name}-{width}.png"))
            violations = self._axe()
            assert violations == [], f"{name} at {width}px: {json.dumps(violations, indent=1)}"
            wide = self.driver.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth + 1"
            )
            assert not wide, f"{name} scrolls sideways at {width}px"
        self.driver.set_window_size(WIDE, 900)

    def _axe(self) -> list[dict[str, Any]]:
        """Serious and critical violations axe-core finds on the page."""
        self.driver.execute_script(self.axe)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', nodes: [String(e)]}]));"
        )
        return [v for v in result if v["impact"] in {"serious", "critical"}]


@pytest.fixture
def person(browser: webdriver.Chrome, stack: Stack, axe_source: str) -> Console:
    """The module's browser, as a person at the console."""
    browser.set_window_size(WIDE, 900)
    return Console(browser, stack, axe_source)


def _open_cases(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    items = stack.call("reviewer", "*", f"/api/cases?status=open&tenant={tenant}")["items"]
    return [c for c in items if c["entity"] not in {XSS_ENTITY, REPLAY_ENTITY}]


def _case_path(case: dict[str, Any]) -> str:
    return f"/console/cases/{case['tenant']}/{case['entity']}/{case['number']}"


def test_a_reviewer_decides_a_case_and_its_next_assessment_shows_the_review(
    person: Console, stack: Stack
) -> None:
    """Queue, case, decide with a reason; the case leaves the queue; the log and score follow."""
    person.login("reviewer", "acme")
    person.go("/console/queue")
    person.look("queue")
    case = min(_open_cases(stack, "acme"), key=lambda c: c["score"])
    row = person.driver.find_element(By.CSS_SELECTOR, f'tr[data-case="{case["case"]}"] a')
    row.click()
    person.wait(lambda d: d.current_url.endswith(_case_path(case)))
    assert person.driver.find_element(By.CSS_SELECTOR, "svg.chart-svg circle")
    person.look("case")
    person.driver.find_element(By.CSS_SELECTOR, "input[value=confirmed]").click()
    person.driver.find_element(By.CSS_SELECTOR, "#decide button").click()
    assert (
        "a reason is required"
        in person.wait(lambda d: d.find_element(By.CSS_SELECTOR, ".error")).text
    )
    person.driver.find_element(By.CSS_SELECTOR, "input[value=confirmed]").click()
    Select(person.driver.find_element(By.ID, "d-level")).select_by_value("critical")
    person.driver.find_element(By.ID, "d-reason").send_keys("seen on the EDR console <b>too</b>")
    person.driver.find_element(By.CSS_SELECTOR, "#decide button").click()
    person.wait(lambda d: "done=decided" in d.current_url)
    assert person.text(".case-status") == "decided"
    assert "seen on the EDR console <b>too</b>" in person.text(".facts .decision")

    async def decided(es: EventStore) -> list[dict[str, Any]]:
        return [
            rec.event.data or {}
            async for rec in es.read(case["tenant"], case["entity"], category="review")
            if rec.event is not None and rec.event.type == DECIDED
        ]

    [event] = stack.store(decided)
    assert (event["outcome"], event["by"]["name"]) == ("confirmed", "reviewer-acme")

    def gone() -> bool:
        person.go("/console/queue")
        return not person.driver.find_elements(By.CSS_SELECTOR, f'tr[data-case="{case["case"]}"]')

    _until("the decided case leaves the queue", gone)

    async def review_end(es: EventStore) -> int:
        return int((await es.stream_state(es.config.stream_for("review")))["last_seq"])

    last = stack.store(review_end)
    _until(  # the worker looks at the decisions every second: the next evidence comes after
        "the worker read the decision",
        lambda: any(
            line.get("at", 0) >= last
            for line in stack.worker.events("worker.decisions_read", projection=None)
        ),
    )

    async def more(es: EventStore) -> None:
        await es.append(
            plain_evidence(2, tenant=case["tenant"], entity=case["entity"], severity="low")
        )

    stack.store(more)

    def reviewed() -> bool:
        person.go(_case_path(case))
        return bool(
            person.driver.find_elements(By.CSS_SELECTOR, '[data-contribution="review:confirmed"]')
        )

    _until("the next assessment's review contribution on the case page", reviewed)
    person.look("case-decided")


def test_the_second_of_two_sessions_deciding_sees_the_first_decision(
    person: Console, stack: Stack, axe_source: str
) -> None:
    """Both load the case; the first decides; the second's decision is refused, shown theirs."""
    case = _open_cases(stack, "globex")[0]
    person.login("reviewer", "*")
    person.go(_case_path(case))
    other = Console(_chrome(), stack, axe_source)
    try:
        other.login("admin", "*")
        other.go(_case_path(case))
        person.driver.find_element(By.CSS_SELECTOR, "input[value=confirmed]").click()
        person.driver.find_element(By.ID, "d-reason").send_keys("first")
        person.driver.find_element(By.CSS_SELECTOR, "#decide button").click()
        person.wait(lambda d: "done=decided" in d.current_url)
        other.driver.find_element(By.CSS_SELECTOR, "input[value=false_positive]").click()
        other.driver.find_element(By.ID, "d-reason").send_keys("second")
        other.driver.find_element(By.CSS_SELECTOR, "#decide button").click()
        banner = other.wait(lambda d: d.find_element(By.CSS_SELECTOR, ".conflict")).text
        assert "Someone else acted on this case first" in banner
        assert "confirmed by reviewer-all" in banner
        assert "first" in banner
        assert other.text(".case-status") == "decided"
        other.look("case-conflict")
    finally:
        other.driver.quit()
    [decision] = [
        e for e in stack.call("reviewer", "*", _case_path(case).replace("/console", "/api"))[
            "timeline"
        ] if e["type"] == DECIDED
    ]  # fmt: skip
    assert decision["data"]["outcome"] == "confirmed"


def test_an_operator_replays_a_dead_letter_and_it_is_assessed(
    person: Console, stack: Stack
) -> None:
    """List, show, confirm, replay: the evidence is assessed and the audit stream records it."""
    person.login("operator", "*")
    person.go("/console/dead-letters")
    person.look("dead-letters")
    letters = stack.call("operator", "*", "/api/dead-letters?status=pending")["items"]
    [letter] = [x for x in letters if x["entity"] == REPLAY_ENTITY]
    seq = letter["dlq_sequence"]
    person.driver.find_element(By.CSS_SELECTOR, f'tr[data-dlq="{seq}"] a').click()
    person.wait(lambda d: d.current_url.endswith(f"/console/dead-letters/{seq}"))
    assert letter["error_type"] in person.text(".error-text")
    assert "malware_alert" in person.text(".payload")
    person.look("dead-letter")
    person.driver.find_element(By.LINK_TEXT, "Replay…").click()
    person.look("dead-letter-replay")
    person.driver.find_element(By.ID, "reason").send_keys("enrichment is back")
    person.driver.find_element(By.ID, "confirm").click()
    person.wait(lambda d: "done=replayed" in d.current_url)
    assert f"replayed {seq}" in person.text("#done")

    async def outcome(es: EventStore) -> tuple[int | None, list[str]]:
        [done] = [x for x in await DeadLetterQueue(es, "risk").list() if x.sequence == seq]
        actors = [
            (rec.event.data or {}).get("actor", "")
            async for rec in es.read_all(stream="AUDIT")
            if rec.event is not None and rec.event.type == "riskpipe.dlq.replayed.v1"
        ]
        return done.replayed_as, actors

    replayed_as, actors = stack.store(outcome)
    assert replayed_as is not None
    assert actors == ["operator-all (operator)"]
    person.go(f"/console/dead-letters/{seq}")
    person.driver.find_element(By.LINK_TEXT, "Purge…").click()
    assert "(required)" in person.text("label[for=reason]")
    person.look("dead-letter-purge")
    person.driver.find_element(By.LINK_TEXT, "Cancel").click()  # nothing purged
    person.wait(lambda d: d.current_url.endswith(f"/console/dead-letters/{seq}"))

    def assessed() -> bool:
        status = stack.call("admin", "*", "/api/status")
        return status["pending"] == 0 and status["balanced"]

    _until("the replayed evidence assessed", assessed)
    person.go("/console/status")
    assert "every evidence event is accounted for" in person.text("#accounting")
    assert "assessments/s" in person.text("#throughput")
    person.look("status")


def test_a_reviewer_cannot_open_another_tenants_case_by_url(person: Console, stack: Stack) -> None:
    """An acme reviewer typing a globex case's address gets the 404 page."""
    [globex] = stack.call("reviewer", "*", "/api/cases?tenant=globex&limit=1")["items"]
    person.login("reviewer", "acme")
    person.go(_case_path(globex))
    assert person.driver.title.startswith("Not found")
    assert globex["entity"] not in person.text("main").replace("Not found", "")
    person.look("not-found")


def test_markup_in_evidence_is_shown_as_text(person: Console, stack: Stack) -> None:
    """``<script>`` in a description and attributes shows literally, and never runs."""
    [case] = [
        c for c in stack.call("reviewer", "*", "/api/cases?tenant=acme")["items"]
        if c["entity"] == XSS_ENTITY
    ]  # fmt: skip
    person.login("reviewer", "acme")
    person.go(_case_path(case))
    cell = person.text("table.evidence .evidence-text")
    assert XSS in cell
    assert "<img src=x onerror=alert(2)>" in cell
    assert person.driver.find_elements(By.CSS_SELECTOR, "table.evidence script") == []
    assert person.driver.find_elements(By.CSS_SELECTOR, "table.evidence img") == []
    person.go(f"/console/entities/acme/{XSS_ENTITY}")
    assert XSS in person.text("table.evidence .evidence-text")
    person.look("entity")
    person.go(f"/console/audit?tenant=acme&entity={XSS_ENTITY}")
    assert person.text("#verdict").startswith("Verified")
    person.look("audit")


def test_logout_ends_the_session_and_an_expired_one_asks_to_log_in_again(
    person: Console,
) -> None:
    """After logout the old cookie opens nothing; a session past its expiry goes to the login."""
    person.login("reviewer", "acme")
    cookie = person.driver.get_cookie(COOKIE)
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    person.go("/console/queue")
    person.driver.find_element(By.CSS_SELECTOR, ".who button").click()
    person.wait(lambda d: "why=out" in d.current_url)
    assert "You are logged out" in person.text("main")
    person.driver.add_cookie({"name": COOKIE, "value": cookie["value"], "path": "/console"})
    person.go("/console/queue")
    assert "/console/login" in person.driver.current_url
    expired = sign_session(
        SECRET.encode(), sid="gone", name="reviewer-acme", expires_at=time.time() - 5
    )
    person.driver.delete_all_cookies()
    person.driver.add_cookie({"name": COOKIE, "value": expired, "path": "/console"})
    person.go("/console/queue")
    assert "why=expired" in person.driver.current_url
    assert "Your session has expired" in person.text("main")
    person.look("login")


def test_entity_search_leads_to_a_timeline_without_cases(person: Console) -> None:
    """Search by tenant and id; an entity without a case still has its timeline."""
    person.login("reviewer", "*")
    person.go("/console/entities")
    person.look("entity-search")
    person.driver.find_element(By.ID, "e-tenant").send_keys("globex")
    person.driver.find_element(By.ID, "e-entity").send_keys("user-erin")
    person.driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    person.wait(lambda d: d.current_url.endswith("/console/entities/globex/user-erin"))
    assert "No case was opened" in person.text("main") or "case #" in person.text("main")
    assert person.driver.find_element(By.CSS_SELECTOR, "svg.chart-svg")


def test_pages_run_no_inline_script(person: Console) -> None:
    """The browser reports no CSP violation on the queue (the policy is the one served)."""
    person.login("reviewer", "acme")
    person.go("/console/queue")
    try:
        logs = person.driver.get_log("browser")
    except WebDriverException:  # pragma: no cover - a driver without logs
        logs = []
    assert not [e for e in logs if "Content Security Policy" in e.get("message", "")]


def test_the_queue_is_keyboard_navigable(person: Console) -> None:
    """``j`` moves to the first case, ``j`` again to the next, Enter opens the focused case."""
    person.login("reviewer", "*")
    person.go("/console/queue")
    links = person.driver.find_elements(By.CSS_SELECTOR, "#queue a.case-link")
    assert len(links) >= 2
    body = person.driver.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    assert person.driver.switch_to.active_element == links[0]
    person.driver.switch_to.active_element.send_keys("j")
    assert person.driver.switch_to.active_element == links[1]
    target = links[1].get_attribute("href")
    person.driver.switch_to.active_element.send_keys(Keys.ENTER)
    person.wait(lambda d: d.current_url == target)
