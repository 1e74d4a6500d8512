"""``riskpipe worker``: run the risk projection, in one process or several under a supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

import click
import structlog
from prometheus_client import CollectorRegistry

from analyzers.errors import AnalyzerError
from eventstore.errors import EventStoreError
from projections.errors import ProjectionError
from projections.shadow import InvalidShadowVersionError, shadow_projection
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import fail, store_error
from riskpipe.errors import RiskpipeError
from riskpipe.http import HealthServer
from riskpipe.supervisor import Supervisor
from riskpipe.telemetry import configure_tracing
from riskpipe.wiring import connect_store, connect_store_when_up
from riskpipe.worker import ShadowConfigError, ShadowRun, Worker, retried_at_start, shadow_run

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.settings import Settings

_log = structlog.get_logger(__name__)


class _Processes(click.ParamType[int]):
    """A count of processes, at least 1, or ``auto`` for one per CPU."""

    name = "N|auto"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return os.cpu_count() or 1
        if not text.isdecimal() or int(text) < 1:
            self.fail(f"{value!r} is not a number of processes (1 or more) or 'auto'", param, ctx)
        return int(text)


_PROCESSES = _Processes()


def _shadow_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--shadow`` version name, checked as a subject token (exit 2 if it is not one)."""
    del ctx, param
    if value is not None:
        try:
            shadow_projection(value)
        except InvalidShadowVersionError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


async def _check_shadow(settings: Settings, version: str) -> None:
    """Before a supervisor starts its processes: the shadow version exists and loads.

    Raises:
        ShadowConfigError: it does not.
    """
    async with await connect_store(settings, name=_name(settings)) as store:
        await shadow_run(store, version)


def _supervise(settings: Settings, count: int, *, until_idle: bool, http: bool) -> int:
    """Run ``count`` copies of this command, each one process, and keep them running."""
    args = _without_processes(sys.argv[1:])

    def command(index: int) -> list[str]:
        child = [sys.executable, "-m", "riskpipe", *args, "--supervised-by", str(os.getpid())]
        if until_idle:  # the children share the batch by leases
            child += ["--batch-processes", str(count)]
        if http:  # the last --http-port given wins
            port = settings.http_port + index if settings.http_port else 0
            child += ["--http-port", str(port)]
        return child

    supervisor = Supervisor(
        command, count, until_idle=until_idle, grace=settings.drain_timeout_seconds + 10
    )
    _log.info("supervisor.started", processes=count, until_idle=until_idle)
    return asyncio.run(_run_supervisor(supervisor))


async def _run_supervisor(supervisor: Supervisor) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await supervisor.run(stop)


def _without_processes(args: list[str]) -> list[str]:
    """The command line without ``--processes N``: each child is one process."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            kept.append(arg)
    return kept


@main.command()
@click.option("--until-idle", is_flag=True, help="Exit 0 once nothing is pending (batch jobs).")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port for /healthz, /readyz, /metrics [default 9464; 0 picks one].",
)
@click.option("--no-http", is_flag=True, help="Do not serve HTTP.")
@click.option(
    "--degraded",
    is_flag=True,
    default=None,
    help="Emit conservative assessments instead of pausing when enrichment is down.",
)
@click.option(
    "--processes",
    type=_PROCESSES,
    default="1",
    show_default=True,
    help="Worker processes under one supervisor; `auto` is one per CPU. Process i serves"
    " HTTP on the HTTP port + i.",
)
@click.option(
    "--shadow",
    "shadow",
    metavar="VERSION",
    default=None,
    callback=_shadow_version,
    help="Also score every evidence with proposed config VERSION, writing shadow assessments"
    " to SHADOW (never live, no review cases): see `riskpipe shadow report`.",
)
@click.option("--supervised-by", type=int, default=None, hidden=True)
@click.option("--batch-processes", type=click.IntRange(min=1), default=1, hidden=True)
@pass_app
def worker(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    until_idle: bool,
    http_port: int | None,
    no_http: bool,
    degraded: bool | None,
    processes: int,
    shadow: str | None,
    supervised_by: int | None,
    batch_processes: int,
) -> None:
    """Run the risk projection: evidence in, assessments out, until SIGTERM/Ctrl-C."""
    updates: dict[str, object] = {}
    if http_port is not None:
        updates["http_port"] = http_port
    if degraded:
        updates["degraded_mode"] = True
    settings = app.settings.model_copy(update=updates)
    try:
        if processes > 1:
            if shadow is not None:  # once, rather than each process failing (and restarted)
                asyncio.run(_check_shadow(settings, shadow))
            sys.exit(_supervise(settings, processes, until_idle=until_idle, http=not no_http))
        asyncio.run(
            _worker(
                settings,
                until_idle=until_idle,
                http=not no_http,
                parent=supervised_by,
                batch=batch_processes,
                shadow=shadow,
            )
        )
    except ShadowConfigError as exc:
        fail("worker.failed", str(exc), code=2)
    except EventStoreError as exc:
        fail("worker.failed", store_error(exc))
    except (RiskpipeError, AnalyzerError, ProjectionError) as exc:
        fail("worker.failed", str(exc))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while stopping
        sys.exit(130)
    except Exception:  # noqa: BLE001 - a bug: still one log record, its traceback as data
        _log.exception("worker.crashed")
        sys.exit(1)


async def _worker(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    *,
    until_idle: bool,
    http: bool,
    parent: int | None = None,
    batch: int = 1,
    shadow: str | None = None,
) -> None:
    """One worker process, supervised by ``parent`` (a PID) or not.

    ``batch``: how many processes run this ``--until-idle`` batch together.
    The supervisor of ``--processes N --until-idle`` tells its children with
    ``--batch-processes N``: each holds leases on its share of the partitions
    and exits once every partition is drained. A batch run of one process
    takes no leases: it runs every partition itself.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphaned = None
    if parent is not None:
        orphaned = asyncio.create_task(_stop_when_orphaned(parent, stop), name="parent-watch")
    try:
        await _run_worker(
            settings, stop, until_idle=until_idle, http=http, batch=batch, shadow=shadow
        )
    finally:
        if orphaned is not None:
            orphaned.cancel()


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """Stop once the supervisor is gone (killed with -9, it could not stop its children)."""
    while os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()
                return
    _log.warning("worker.supervisor_gone", supervisor=parent)
    stop.set()


async def _run_worker(  # noqa: PLR0913 - the command's options, passed through
    settings: Settings,
    stop: asyncio.Event,
    *,
    until_idle: bool,
    http: bool,
    batch: int,
    shadow: str | None = None,
) -> None:
    provider = configure_tracing(settings, service=f"riskpipe-worker-{settings.projection}")
    if until_idle:  # a batch job: NATS not there is its failure, not something to wait for
        store: EventStore | None = await connect_store(settings, name=_name(settings))
    else:
        store = await _connect(settings, stop, http=http)
    if store is None:  # stopped while waiting for NATS
        return
    try:
        async with store:  # closes it; a permission denial ends the block with its subject
            report = await retried_at_start(store, stop, "provision", store.provision)
            if report is None:  # stopped meanwhile
                return
            for drift in report.drifted:
                _log.warning("worker.stream_drift", detail=str(drift))
            run: ShadowRun | None = None
            if shadow is not None:
                version = shadow
                run = await retried_at_start(
                    store, stop, "shadow", lambda: shadow_run(store, version)
                )
                if run is None:  # stopped meanwhile
                    return
            await Worker(store, settings, CollectorRegistry(), shadow=run).run(
                stop, until_idle=until_idle, http=http, processes=batch
            )
    finally:
        if provider is not None:
            provider.shutdown()


async def _connect(settings: Settings, stop: asyncio.Event, *, http: bool) -> EventStore | None:
    """Connect once NATS is up; meanwhile ``/readyz`` says the worker is waiting for it."""
    if not http:
        return await connect_store_when_up(settings, stop, name=_name(settings))
    waiting = HealthServer(
        registry=CollectorRegistry(),
        readiness=lambda: (False, "waiting for NATS"),
        host=settings.http_host,
        port=settings.http_port,
    )
    await waiting.start()
    _log.info("worker.http", host=waiting.host, port=waiting.port, waiting_for="NATS")
    try:
        return await connect_store_when_up(settings, stop, name=_name(settings))
    finally:
        await waiting.stop()


def _name(settings: Settings) -> str:
    return f"riskpipe-worker-{settings.projection}"
