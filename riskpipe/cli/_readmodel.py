"""``riskpipe readmodel``: keep the SQL read model up to date, rebuild it, show where it is."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import click
import structlog
from prometheus_client import CollectorRegistry
from rich.table import Table

from eventstore.errors import EventStoreError
from projections.readmodel import DatabaseUrlError, ReadModelError, normalise_url
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import fail, out_console, store_error
from riskpipe.errors import RiskpipeError
from riskpipe.http import HealthServer
from riskpipe.readmodel import open_database, read_model
from riskpipe.wiring import connect_store, connect_store_when_up

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from eventstore import EventStore
    from projections.readmodel import ReadModel, ReadModelStatus, RebuildResult
    from riskpipe.settings import Settings

_log = structlog.get_logger(__name__)
_NAME = "riskpipe-readmodel"
_T = TypeVar("_T")


@main.group()
@click.option(
    "--database-url",
    default=None,
    help="The read model's database: sqlite+aiosqlite:///FILE or postgresql+asyncpg://..."
    " [env RISKPIPE_DATABASE_URL; default: a SQLite file in .riskpipe/].",
)
@pass_app
def readmodel(app: AppContext, database_url: str | None) -> None:
    """The SQL read model: latest assessments, dead letters, review cases, for the API."""
    if database_url is None:
        return
    try:
        normalise_url(database_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--database-url") from None
    app.settings = app.settings.model_copy(update={"database_url": database_url})


def _execute(event: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:  # noqa: ANN401
    """Run a command's coroutine; each failure is one ``readmodel.*`` error line and exit 1."""
    try:
        return asyncio.run(work())
    except EventStoreError as exc:
        fail(event, store_error(exc))
    except (ReadModelError, RiskpipeError) as exc:
        fail(event, str(exc))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while stopping
        sys.exit(130)


@readmodel.command("run")
@click.option("--until-idle", is_flag=True, help="Exit 0 once every stream is applied (batch).")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port for /healthz, /readyz, /metrics [default RISKPIPE_HTTP_PORT; 0 picks one].",
)
@click.option("--no-http", is_flag=True, help="Do not serve HTTP.")
@pass_app
def run_(app: AppContext, until_idle: bool, http_port: int | None, no_http: bool) -> None:
    """Apply the log after the read model's positions, then follow it until SIGTERM/Ctrl-C.

    Each batch and its position commit in one transaction: a restart after a
    crash resumes exactly where the last commit left off.
    """
    settings = app.settings
    if http_port is not None:
        settings = settings.model_copy(update={"http_port": http_port})
    _execute("readmodel.failed", lambda: _run(settings, until_idle=until_idle, http=not no_http))


async def _run(settings: Settings, *, until_idle: bool, http: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await _check(settings)
    if until_idle:  # a batch job: NATS not there is its failure, not something to wait for
        store: EventStore | None = await connect_store(settings, name=_NAME)
    else:
        store = await connect_store_when_up(settings, stop, name=_NAME)
    if store is None:  # stopped while waiting for NATS
        return
    registry = CollectorRegistry()
    db = open_database(settings)
    server: HealthServer | None = None
    try:
        async with store:
            model = read_model(store, db, settings, registry)
            if http:
                server = HealthServer(
                    registry=registry,
                    readiness=lambda: (
                        (True, "caught up") if model.caught_up else (False, "catching up")
                    ),
                    host=settings.http_host,
                    port=settings.http_port,
                )
                await server.start()
                _log.info("readmodel.http", host=server.host, port=server.port)
            await model.run(stop, until_idle=until_idle)
    finally:
        if server is not None:
            await server.stop()
        await db.dispose()


@readmodel.command()
@pass_app
def rebuild(app: AppContext) -> None:
    """Build the read model again from the start of the log, then switch readers to it.

    Blue/green: readers keep the current generation while a new one is built
    into fresh tables; once it has caught up, one transaction makes it the
    active one, and the old generation's tables are dropped.
    """
    result: RebuildResult | None = _execute(
        "readmodel.rebuild_failed", lambda: _with_model(app.settings, _rebuild)
    )
    if result is None:
        click.echo("rebuild stopped before it caught up: nothing was switched", err=True)
        sys.exit(1)
    replaced = f", replacing generation {result.replaced} (dropped)" if result.replaced else ""
    click.echo(f"generation {result.generation} built from {result.events} messages{replaced}")


async def _rebuild(model: ReadModel) -> RebuildResult | None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await model.rebuild(stop)


@readmodel.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """The schema, the active generation, and the position and lag in each stream."""
    found: ReadModelStatus = _execute(
        "readmodel.status_failed", lambda: _with_model(app.settings, _status, create=False)
    )
    if as_json:
        click.echo(json.dumps(_as_dict(found), sort_keys=True))
        return
    click.echo(f"database: {found.database}")
    click.echo(
        f"schema: version {found.schema_version} (this riskpipe: {found.known_schema_version})"
    )
    if found.generation is None:
        click.echo("generation: none yet (run `riskpipe readmodel run`)")
    else:
        click.echo(f"generation: {found.generation} (table layout {found.layout})")
    if found.building:
        click.echo(f"being built: {', '.join(map(str, found.building))}")
    table = Table(title="positions")
    for column in ("source", "stream", "position", "last seq", "lag"):
        table.add_column(column, justify="left" if column in {"source", "stream"} else "right")
    for s in found.streams:
        last = "missing" if s.last_seq is None else str(s.last_seq)
        table.add_row(s.source, s.stream, str(s.position), last, str(s.lag))
    out_console().print(table)
    click.echo(f"lag: {found.lag}")


async def _status(model: ReadModel) -> ReadModelStatus:
    return await model.status()


def _as_dict(found: ReadModelStatus) -> dict[str, Any]:
    return {
        "database": found.database,
        "schema_version": found.schema_version,
        "known_schema_version": found.known_schema_version,
        "generation": found.generation,
        "layout": found.layout,
        "building": found.building,
        "lag": found.lag,
        "streams": [
            {
                "source": s.source,
                "stream": s.stream,
                "position": s.position,
                "last_seq": s.last_seq,
                "lag": s.lag,
            }
            for s in found.streams
        ],
    }


async def _with_model(
    settings: Settings,
    work: Callable[[ReadModel], Coroutine[Any, Any, _T]],
    *,
    create: bool = True,
) -> _T:
    """``work`` on the read model of the store at ``settings.nats_url``; both closed after."""
    await _check(settings, create=create)
    db = open_database(settings)
    try:
        async with await connect_store(settings, name=_NAME) as store:
            return await work(read_model(store, db, settings))
    finally:
        await db.dispose()


async def _check(settings: Settings, *, create: bool = True) -> None:
    """Reach the database before NATS: a wrong URL or a database that is down is said first.

    Without ``create``, a SQLite file that does not exist is left alone (status reads only).
    """
    db = open_database(settings)
    if not create and db.missing():
        return
    try:
        await db.check()
    finally:
        await db.dispose()
