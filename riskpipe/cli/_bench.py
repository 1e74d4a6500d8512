"""``riskpipe bench ingest``: the store's append path against raw nats-py, same server, same run."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

import click
from rich.table import Table

from eventstore import EventStore
from eventstore.baselines import raw_pipelined_publish
from riskpipe.bench import Measurement, private_server, timed
from riskpipe.cli._app import bench
from riskpipe.cli._common import out_console
from riskpipe.demo import synthetic_evidence
from riskpipe.wiring import build_schemas

INGEST_TARGET = 0.7


@bench.command()
@click.option("--events", "count", default=20_000, show_default=True, help="Events per run.")
@click.option("--entities", default=1000, show_default=True, help="Distinct entities.")
@click.option("--runs", default=3, show_default=True, help="Runs per path; medians are reported.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def ingest(count: int, entities: int, runs: int, as_json: bool) -> None:
    """Append N events through the store and through raw nats-py; print both rates and the ratio."""
    with private_server() as server:
        store_m, raw_m = asyncio.run(_ingest(server.url, count, entities, runs))
    ratio = store_m.median / raw_m.median
    figures: dict[str, Any] = {
        "events": count, "runs": runs,
        "store_per_s": round(store_m.median), "raw_per_s": round(raw_m.median),
        "ratio": round(ratio, 3), "target": INGEST_TARGET,
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(figures))
        return
    table = Table(title=f"ingest: {count} events x {runs} runs (medians)")
    for col in ("path", "events/s", "runs"):
        table.add_column(col)
    for m in (store_m, raw_m):
        table.add_row(m.name, f"{m.median:,.0f}", ", ".join(f"{r:,.0f}" for r in m.rates))
    out_console().print(table)
    verdict = "meets" if ratio >= INGEST_TARGET else "below"
    click.echo(f"ratio store/raw = {ratio:.2f} ({verdict} the {INGEST_TARGET}x target)")


async def _ingest(
    url: str, count: int, entities: int, runs: int
) -> tuple[Measurement, Measurement]:
    store = await EventStore.connect(url, schemas=build_schemas(), name="riskpipe-bench")
    await store.provision()
    store_m = Measurement("store.append_many (validated, idempotent)")
    raw_m = Measurement("raw nats-py pipelined publish + Msg-Id")
    try:
        for run in range(runs):
            events = synthetic_evidence(count, source=f"bench-store-{run}", entities=entities)
            store_m.rates.append(await timed(count, partial(store.append_many, events)))
            raw = [
                (
                    store.subject_of(e),
                    e.model_dump_json(exclude_none=True).encode(),
                    f"raw-{run}:{e.id}",
                )
                for e in synthetic_evidence(count, source=f"bench-raw-{run}", entities=entities)
            ]
            raw_m.rates.append(await timed(count, partial(raw_pipelined_publish, url, raw)))
    finally:
        await store.close()
    return store_m, raw_m
