"""``riskpipe worker``: run the risk projection."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import click
import structlog
from prometheus_client import CollectorRegistry

from analyzers.errors import AnalyzerError
from eventstore.errors import EventStoreError
from projections.errors import ProjectionError
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import fail, store_error
from riskpipe.errors import RiskpipeError
from riskpipe.http import HealthServer
from riskpipe.telemetry import configure_tracing
from riskpipe.wiring import connect_store, connect_store_when_up
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.settings import Settings

_log = structlog.get_logger(__name__)


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
@pass_app
def worker(
    app: AppContext, until_idle: bool, http_port: int | None, no_http: bool, degraded: bool | None
) -> None:
    """Run the risk projection: evidence in, assessments out, until SIGTERM/Ctrl-C."""
    updates: dict[str, object] = {}
    if http_port is not None:
        updates["http_port"] = http_port
    if degraded:
        updates["degraded_mode"] = True
    settings = app.settings.model_copy(update=updates)
    try:
        asyncio.run(_worker(settings, until_idle=until_idle, http=not no_http))
    except EventStoreError as exc:
        fail("worker.failed", store_error(exc))
    except (RiskpipeError, AnalyzerError, ProjectionError) as exc:
        fail("worker.failed", str(exc))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while stopping
        sys.exit(130)
    except Exception:  # noqa: BLE001 - a bug: still one log record, its traceback as data
        _log.exception("worker.crashed")
        sys.exit(1)


async def _worker(settings: Settings, *, until_idle: bool, http: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    provider = configure_tracing(settings, service=f"riskpipe-worker-{settings.projection}")
    if until_idle:  # a batch job: NATS not there is its failure, not something to wait for
        store: EventStore | None = await connect_store(settings, name=_name(settings))
    else:
        store = await _connect(settings, stop, http=http)
    if store is None:  # stopped while waiting for NATS
        return
    try:
        async with store:  # closes it; a permission denial ends the block with its subject
            report = await store.provision()
            if not report.ok:
                for drift in report.drifted:
                    _log.warning("worker.stream_drift", detail=str(drift))
            await Worker(store, settings, CollectorRegistry()).run(
                stop, until_idle=until_idle, http=http
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
