"""``riskpipe bench api``: the case list's latency over HTTP, on a read model of many cases.

The read model is filled directly (the SQL rows a long review history
leaves), then a live ``riskpipe api`` app on loopback answers case lists the
way a console asks for them: a reviewer's open cases, an admin's view by
level, and paging through with the cursor. Each request is timed from the
client, one at a time (latency, not throughput).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
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
from projections.readmodel import Database, ReadModelReader, create_generation, migrate
from riskpipe.api import TokenEntry, TokenTable, create_app
from riskpipe.bench import private_server
from riskpipe.cli._app import bench
from riskpipe.cli._bench_pipeline import wait_acked
from riskpipe.cli._common import out_console, run
from riskpipe.demo import synthetic_evidence
from riskpipe.http import AppServer
from riskpipe.logs import configure_logging
from riskpipe.readmodel import read_model
from riskpipe.settings import Settings
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas, private_environment
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from projections.readmodel import GenerationTables

__all__ = ["ApiFigures", "LagFigures", "api_bench"]

P99_TARGET_MS = 50.0
_LEVELS = ("medium", "high", "critical")
_STATUSES = ("open", "open", "open", "escalated", "decided")
_CHUNK = 5_000
_ASSIGNED = 0.6
"""The share of cases someone is assigned to."""


@dataclass(frozen=True, slots=True)
class LagFigures:
    """How far the read model fell behind the risk stream while a pipeline ran."""

    evidence: int
    offered_per_second: float
    assessed_per_second: float
    max_lag_messages: int
    max_lag_seconds: float
    """The largest lag, as time at the rate assessments were written."""
    caught_up_seconds: float
    """From the last assessment written to the read model holding it."""


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
    pipeline: LagFigures | None = None


@bench.command("api")
@click.option("--cases", default=100_000, show_default=True, help="Cases in the read model.")
@click.option("--tenants", default=20, show_default=True, help="Tenants they belong to.")
@click.option("--requests", default=600, show_default=True, help="Timed case-list requests.")
@click.option(
    "--database-url",
    default=None,
    help="A database to fill (its read model is replaced) [default: a temporary SQLite file].",
)
@click.option(
    "--pipeline-events",
    default=20_000,
    show_default=True,
    help="Evidence offered to a running worker while the read model follows (0: skip).",
)
@click.option("--rate", default=2_000, show_default=True, help="Evidence per second offered.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def api_bench(  # noqa: PLR0913, PLR0917 - one click option each
    cases: int,
    tenants: int,
    requests: int,
    database_url: str | None,
    pipeline_events: int,
    rate: int,
    as_json: bool,
) -> None:
    """Case-list latency over HTTP on a read model of --cases cases (p99 target: 50 ms).

    Then, with --pipeline-events, how far the read model falls behind a
    pipeline running at --rate (a worker and the read model in this process).
    """
    configure_logging("error", "console")
    with tempfile.TemporaryDirectory(prefix="riskpipe-bench-api-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'readmodel.db'}"
        figures = run(_measure(url, cases, tenants, requests))
        if pipeline_events > 0:
            lag_url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'following.db'}"
            lag = run(_keeps_up(lag_url, pipeline_events, rate))
            figures = dataclasses.replace(figures, pipeline=lag)
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
    if (following := figures.pipeline) is not None:
        click.echo(
            f"read model following {following.evidence:,} evidence offered at"
            f" {following.offered_per_second:,.0f}/s"
            f" (assessed at {following.assessed_per_second:,.0f}/s):"
            f" at most {following.max_lag_messages:,} assessments behind"
            f" (~{following.max_lag_seconds:.2f} s),"
            f" caught up {following.caught_up_seconds:.2f} s after the last one"
        )


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


async def _keeps_up(url: str, events: int, rate: int) -> LagFigures:
    """Offer ``events`` at ``rate`` to a running worker and sample the read model's lag."""
    db = Database(url)
    stop = asyncio.Event()
    try:
        with private_server() as server:
            settings = Settings(nats_url=server.url, fetch_timeout=0.2, database_url=url)
            store = await EventStore.connect(
                server.url, schemas=build_schemas(), config=topology_config(), name="bench-lag"
            )
            async with store:
                await store.provision()
                return await _follow_while_offered(
                    store, db, settings=settings, stop=stop, events=events, rate=rate
                )
    finally:
        stop.set()
        await db.dispose()


async def _follow_while_offered(  # noqa: PLR0913 - the pipeline, its read model, the load
    store: EventStore,
    db: Database,
    *,
    settings: Settings,
    stop: asyncio.Event,
    events: int,
    rate: int,
) -> LagFigures:
    worker = Worker(store, settings, CollectorRegistry())
    model = read_model(store, db, settings)  # here for its positions; it runs in a process
    tables = await model.prepare()
    risk = store.config.stream_for("risk")
    follower = _follower(settings)
    tasks = [asyncio.create_task(worker.run(stop, http=False), name="bench-worker")]
    try:
        await worker.started.wait()
        lags: list[int] = []

        async def lag() -> int:
            written = int((await store.stream_state(risk))["last_seq"])
            return max(0, written - (await model.positions(tables)).get(risk, 0))

        async def sample() -> None:
            while True:
                lags.append(await lag())
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample(), name="bench-lag")
        started = time.perf_counter()
        last = await _offer(store, events, rate)
        offered = time.perf_counter() - started
        await wait_acked(store, last)
        assessed = time.perf_counter() - started
        done = time.perf_counter()
        while await lag() > 0:  # noqa: ASYNC110 - the database is polled, nothing signals it
            await asyncio.sleep(0.02)
        caught_up = time.perf_counter() - done
        sampler.cancel()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        follower.terminate()
        await asyncio.to_thread(follower.wait, 30)
    per_second = events / assessed
    return LagFigures(
        evidence=events,
        offered_per_second=events / offered,
        assessed_per_second=per_second,
        max_lag_messages=max(lags, default=0),
        max_lag_seconds=max(lags, default=0) / per_second,
        caught_up_seconds=caught_up,
    )


def _follower(settings: Settings) -> subprocess.Popen[bytes]:
    """``riskpipe readmodel run`` in a process of its own, as it runs in production."""
    assert settings.database_url is not None  # noqa: S101 - set by the caller
    env = {
        **private_environment(os.environ, settings.nats_url),
        "RISKPIPE_DATABASE_URL": settings.database_url,
    }
    command = [sys.executable, "-m", "riskpipe", "--log-level", "error", "readmodel", "run"]
    return subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [*command, "--no-http"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def _offer(store: EventStore, events: int, rate: int) -> int:
    """Append ``events`` synthetic evidence at about ``rate`` a second; the last sequence."""
    evidence = synthetic_evidence(events, source="bench-readmodel", entities=1_000)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    loop = asyncio.get_running_loop()
    started = loop.time()
    last = 0
    for n in range(0, len(evidence), per_tick):
        for result in await store.append_many(evidence[n : n + per_tick]):
            if not isinstance(result, BaseException):
                last = max(last, result.sequence)
        await asyncio.sleep(max(0.0, started + (n // per_tick + 1) * tick - loop.time()))
    return last


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
