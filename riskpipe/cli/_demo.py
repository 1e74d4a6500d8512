"""``riskpipe demo``: the whole pipeline on a private server, start to finish."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from prometheus_client import CollectorRegistry
from rich.table import Table

from eventstore import EventStore
from projections import DeadLetterQueue
from projections.readmodel import ReadModelReader
from projections.review import all_cases
from riskpipe.api import ROLES, add_token, create_app, load_tokens
from riskpipe.bench import private_server
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import out_console, plain, run
from riskpipe.cli._demo_learning import learning_available, learning_loop
from riskpipe.demo import POISON, demo_evidence
from riskpipe.http import AppServer
from riskpipe.logs import configure_logging
from riskpipe.readmodel import open_database, read_model
from riskpipe.status import pipeline_status
from riskpipe.wiring import build_schemas, private_settings, store_config
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from riskpipe.settings import Settings


@main.command()
@click.option("--events", default=300, show_default=True, help="Synthetic evidence events.")
@click.option("--seed", default=7, show_default=True, help="Random seed for the evidence.")
@click.option(
    "--console",
    "with_console",
    is_flag=True,
    help="Then keep the server, a worker and the API with its web console running, print the"
    " console's URL and a token per role to log in with, until Ctrl-C (docs/console.md).",
)
@click.option(
    "--learning/--no-learning",
    default=True,
    show_default=True,
    help="Also run one learn, shadow, promote cycle on a synthetic history (docs/learning.md).",
)
@pass_app
def demo(app: AppContext, events: int, seed: int, with_console: bool, learning: bool) -> None:
    """Start a private NATS server, publish evidence, run the worker, show the risk picture."""
    started = time.monotonic()
    configure_logging("error", app.settings.log_format)  # the demo's tables say what matters
    with private_server() as server, tempfile.TemporaryDirectory(prefix="riskpipe-demo-") as tmp:
        click.echo(f"nats-server with JetStream on {server.url} (private, temporary)")
        settings = private_settings(app.settings, server.url, data_dir=Path(tmp))
        ok = run(_demo(settings, events, seed, with_console=with_console, learning=learning))
    click.echo(f"done in {time.monotonic() - started:.1f}s; the private server is stopped")
    if not ok:
        sys.exit(1)


async def _demo(
    settings: Settings, events: int, seed: int, *, with_console: bool, learning: bool
) -> bool:
    store = await EventStore.connect(
        settings.nats_url, schemas=build_schemas(), config=store_config(settings), name="demo"
    )
    try:
        await store.provision()
        await _publish(store, events, seed)
        click.echo("running the worker (risk, then review) until nothing is pending ...")
        worker_settings = settings.model_copy(update={"fetch_timeout": 0.2})
        await Worker(store, worker_settings, CollectorRegistry()).run(
            asyncio.Event(), until_idle=True, http=False
        )
        await _show(store, settings.projection)
        if settings.review:
            await _show_cases(store)
        verified = True
        if learning and learning_available():
            verified = await learning_loop(store, settings, seed)
        elif learning:
            click.echo("the learning loop needs pip install 'riskpipe[learn]': skipped")
        status = await pipeline_status(store, settings.projection)
        if with_console:
            await _serve_console(store, settings)
    finally:
        await store.close()
    verdict = "every evidence event is accounted for" if status.balanced else "ACCOUNTING MISMATCH"
    click.echo(
        f"evidence={status.evidence} assessed={status.assessed}"
        f" dead_lettered={status.dead_lettered} pending={status.pending}: {verdict}"
    )
    return status.balanced and verified


async def _serve_console(store: EventStore, settings: Settings) -> None:
    """Serve the API and its console on the demo's store, a worker beside it, until a signal.

    A token per role (every tenant) is made in the demo's temporary data
    directory and printed: it is a private, throwaway pipeline.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    path = settings.data_dir / "api-tokens.yaml"
    plain = {role: add_token(path, f"demo-{role}", role, ["*"]) for role in ROLES}
    db = open_database(settings)
    registry = CollectorRegistry()
    app = create_app(
        store=store, tokens=load_tokens(path), registry=registry,
        projection=settings.projection, reader=ReadModelReader(db),
    )  # fmt: skip
    model = read_model(store, db, settings, registry)
    await model.prepare()
    worker = Worker(store, settings, CollectorRegistry())
    tasks = [
        asyncio.create_task(model.run(stop), name="readmodel"),
        asyncio.create_task(worker.run(stop, http=False), name="worker"),
    ]
    server = AppServer(app, host=settings.api_host, port=settings.api_port)
    await server.start()
    click.echo(f"\nthe console: http://{server.host}:{server.port}/console/  (Ctrl-C stops)")
    for role, token in plain.items():
        click.echo(f"  log in as {role:<8} with {token}")
    try:
        await stop.wait()
    finally:
        await server.stop()
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.dispose()


async def _show_cases(store: EventStore) -> None:
    """The cases the review projection opened, most severe first (docs/review.md)."""
    cases = [entity.current for entity in await all_cases(store) if entity.current is not None]
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    cases.sort(key=lambda case: (order[case.opened.assessment.level.value], case.key))
    table = Table(title=f"review cases opened ({len(cases)}): `riskpipe review list` shows them")
    for col in ("case", "status", "opened at level", "score", "confidence", "why"):
        table.add_column(col)
    for case in cases:
        ref = case.opened.assessment
        table.add_row(
            plain(case.key), case.status, ref.level.value, f"{ref.score:.3f}",
            f"{ref.confidence:.2f}", ", ".join(case.opened.triggers),
        )  # fmt: skip
    out_console().print(table)


async def _publish(store: EventStore, events: int, seed: int) -> None:
    evidence = demo_evidence(random.Random(seed), events=events)  # noqa: S311 - sample data, not secrets
    results = await store.append_many(evidence)
    stored = sum(1 for r in results if not isinstance(r, Exception))
    for n, (tenant, entity, payload) in enumerate(POISON):
        await store.append_unchecked("evidence", tenant, entity, payload, msg_id=f"demo-poison:{n}")
    click.echo(f"published {stored} evidence events and {len(POISON)} poison messages")


async def _show(store: EventStore, projection: str) -> None:
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    async for rec in store.read_all(stream=store.config.stream_for("risk")):
        if rec.event is not None:
            latest[(rec.event.tenant, rec.event.subject)] = rec.event.data or {}
    table = Table(title="risk by entity (latest assessment)")
    for col in ("tenant/entity", "level", "score", "confidence", "top contributions"):
        table.add_column(col)
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    for (tenant, entity), data in sorted(
        latest.items(), key=lambda kv: (order[kv[1]["assessment"]["level"]], kv[0])
    ):
        a = data["assessment"]
        top = sorted(a["contributions"].items(), key=lambda kv: -abs(kv[1]))[:3]
        table.add_row(
            plain(f"{tenant}/{entity}"), a["level"], f"{a['score']:.3f}", f"{a['confidence']:.2f}",
            ", ".join(f"{k}={v:.2f}" for k, v in top),
        )  # fmt: skip
    console = out_console()
    console.print(table)
    letters = await DeadLetterQueue(store, projection).list()
    dlq = Table(title=f"dead letters ({len(letters)})")
    for col in ("dlq seq", "tenant/entity", "evidence seq", "error"):
        dlq.add_column(col)
    for letter in letters:
        d = letter.data
        dlq.add_row(str(letter.sequence), plain(f"{letter.tenant}/{letter.entity}"),
                    str(d.sequence), plain(f"{d.error_type}: {d.error_message[:70]}"))  # fmt: skip
    console.print(dlq)
