"""``riskpipe bench api``: the case list's latency over HTTP, on a read model of many cases.

The read model is filled directly (the SQL rows a long review history
leaves), then a live ``riskpipe api`` app on loopback answers case lists the
way a console asks for them: a reviewer's open cases, an admin's view by
level, and paging through with the cursor. Each request is timed from the
client, one at a time (latency, not throughput).
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx
from prometheus_client import CollectorRegistry
from rich.table import Table

from eventstore import EventStore
from projections.readmodel import Database, ReadModelReader
from projections.readmodel._generations import create_generation
from projections.readmodel._migrations import migrate
from riskpipe.api import TokenEntry, TokenTable, create_app
from riskpipe.bench import private_server
from riskpipe.cli._app import bench
from riskpipe.cli._common import out_console, run
from riskpipe.http import AppServer
from riskpipe.logs import configure_logging
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from projections.readmodel import GenerationTables

__all__ = ["ApiFigures", "api_bench"]

P99_TARGET_MS = 50.0
_LEVELS = ("medium", "high", "critical")
_STATUSES = ("open", "open", "open", "escalated", "decided")
_CHUNK = 5_000
_ASSIGNED = 0.6
"""The share of cases someone is assigned to."""


@dataclass(frozen=True, slots=True)
class ApiFigures:
    """What one run measured."""

    database: str
    cases: int
    tenants: int
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_request: float
    fill_seconds: float


@bench.command("api")
@click.option("--cases", default=100_000, show_default=True, help="Cases in the read model.")
@click.option("--tenants", default=20, show_default=True, help="Tenants they belong to.")
@click.option("--requests", default=600, show_default=True, help="Timed case-list requests.")
@click.option(
    "--database-url",
    default=None,
    help="A database to fill (its read model is replaced) [default: a temporary SQLite file].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def api_bench(
    cases: int, tenants: int, requests: int, database_url: str | None, as_json: bool
) -> None:
    """Case-list latency over HTTP on a read model of --cases cases (p99 target: 50 ms)."""
    configure_logging("error", "console")
    with tempfile.TemporaryDirectory(prefix="riskpipe-bench-api-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'readmodel.db'}"
        figures = run(_measure(url, cases, tenants, requests))
    if as_json:
        click.echo(json.dumps(asdict(figures)))
        return
    table = Table(title=f"GET /api/cases on {figures.cases:,} cases ({figures.database})")
    for column in ("requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU µs/request"):
        table.add_column(column, justify="right")
    table.add_row(
        str(figures.requests), f"{figures.p50_ms:.1f}", f"{figures.p95_ms:.1f}",
        f"{figures.p99_ms:.1f}", f"{figures.max_ms:.1f}", f"{figures.cpu_us_per_request:,.0f}",
    )  # fmt: skip
    out_console().print(table)
    verdict = "meets" if figures.p99_ms < P99_TARGET_MS else "misses"
    click.echo(f"p99 {figures.p99_ms:.1f} ms {verdict} the {P99_TARGET_MS:.0f} ms target")


async def _measure(url: str, cases: int, tenants: int, requests: int) -> ApiFigures:
    db = Database(url)
    try:
        started = time.perf_counter()
        await _fill(db, cases, tenants)
        filled = time.perf_counter() - started
        with private_server() as server:
            store = await EventStore.connect(
                server.url, schemas=build_schemas(), config=topology_config(), name="bench-api"
            )
            async with store:
                await store.provision()
                times, cpu = await _serve_and_time(store, db, tenants, requests)
    finally:
        await db.dispose()
    ordered = sorted(times)
    return ApiFigures(
        database=db.url.get_backend_name(),
        cases=cases,
        tenants=tenants,
        requests=len(times),
        p50_ms=statistics.median(ordered) * 1000,
        p95_ms=ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        p99_ms=ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        max_ms=ordered[-1] * 1000,
        cpu_us_per_request=cpu / len(times) * 1e6,
        fill_seconds=filled,
    )


async def _fill(db: Database, cases: int, tenants: int) -> None:
    """A fresh generation holding ``cases`` cases over ``tenants`` tenants, 3 per entity."""
    await migrate(db)
    tables = await create_generation(db, active=True)
    rng = random.Random(7)  # noqa: S311 - sample data, not secrets
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, cases, _CHUNK):
        rows = [_case(rng, n, tenants, start) for n in range(first, min(cases, first + _CHUNK))]
        await _insert(db, tables, rows)


def _case(rng: random.Random, n: int, tenants: int, start: datetime) -> dict[str, Any]:
    status = _STATUSES[n % len(_STATUSES)]
    decided = status == "decided"
    return {
        "tenant": f"tenant-{n % tenants}",
        "entity": f"entity-{n // 3}",
        "number": n % 3 + 1,
        "status": status,
        "assignee": f"reviewer-{rng.randrange(8)}" if rng.random() < _ASSIGNED else None,
        "opened_at": start + timedelta(seconds=n * 17),
        "triggers": "level",
        "level": rng.choice(_LEVELS),
        "score": rng.random(),
        "confidence": rng.random(),
        "outcome": "confirmed" if decided else None,
        "decided_level": None,
        "decided_at": start + timedelta(seconds=n * 17 + 3600) if decided else None,
        "version": n + 1,
    }


async def _insert(db: Database, tables: GenerationTables, rows: list[dict[str, Any]]) -> None:
    async with db.write() as conn:
        await conn.execute(tables.cases.insert(), rows)


async def _serve_and_time(
    store: EventStore, db: Database, tenants: int, requests: int
) -> tuple[list[float], float]:
    """Serve the API on loopback and time ``requests`` case lists; their times and CPU seconds."""
    admin, reviewer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    table = TokenTable(
        [
            TokenEntry(name="admin", role="admin", tenants=("*",), token_sha256=_sha(admin)),
            TokenEntry(
                name="ana", role="reviewer", tenants=("tenant-3",), token_sha256=_sha(reviewer)
            ),
        ]
    )
    app = create_app(
        store=store, tokens=table, registry=CollectorRegistry(), reader=ReadModelReader(db)
    )
    server = AppServer(app, host="127.0.0.1", port=0)
    await server.start()
    rng = random.Random(11)  # noqa: S311 - sample requests, not secrets
    try:
        base = f"http://{server.host}:{server.port}/api/cases"
        async with httpx.AsyncClient(timeout=30.0) as http:
            asks = _asks(http, base=base, admin=admin, reviewer=reviewer, tenants=tenants, rng=rng)
            for ask in asks[:20]:  # warm up: connections, caches, query plans
                await ask()
            times: list[float] = []
            cpu = time.process_time()
            while len(times) < requests:
                times.extend(await rng.choice(asks)())
            return times[:requests], time.process_time() - cpu
    finally:
        await server.stop()


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _asks(  # noqa: PLR0913 - where, as whom, over how many tenants, with which dice
    http: httpx.AsyncClient,
    *,
    base: str,
    admin: str,
    reviewer: str,
    tenants: int,
    rng: random.Random,
) -> list[Callable[[], Awaitable[list[float]]]]:
    """The requests a console makes: each returns the seconds its requests took."""

    async def timed(token: str, params: dict[str, str | int], pages: int = 1) -> list[float]:
        took = []
        for _ in range(pages):
            started = time.perf_counter()
            answer = await http.get(
                base, params=params, headers={"Authorization": f"Bearer {token}"}
            )
            took.append(time.perf_counter() - started)
            if answer.status_code != 200:  # noqa: PLR2004 - HTTP OK
                raise click.ClickException(f"GET {answer.url}: {answer.status_code} {answer.text}")
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                break
            params = {**params, "cursor": cursor}
        return took

    return [
        lambda: timed(reviewer, {"status": "open", "limit": 50}),
        lambda: timed(reviewer, {"status": "open", "assignee": "reviewer-2", "limit": 50}),
        lambda: timed(reviewer, {"limit": 50}, pages=3),
        lambda: timed(admin, {"tenant": f"tenant-{rng.randrange(tenants)}", "limit": 100}),
        lambda: timed(admin, {"status": "open", "level": rng.choice(_LEVELS), "limit": 100}),
        lambda: timed(admin, {"limit": 100}, pages=3),
    ]
