"""``riskpipe bench ingest``: the store's append path against raw nats-py, same server, same run."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import click
from prometheus_client import CollectorRegistry

from eventstore import EventStore
from eventstore.baselines import raw_pipelined_publish, raw_projection_loop, raw_pull_read
from projections.audit import auto_jobs, replay
from riskpipe.bench import Measurement, Sample, assessing_handler, private_server, timed
from riskpipe.cli._app import AppContext, bench, pass_app
from riskpipe.cli._bench_http import BATCH, HttpIngest
from riskpipe.cli._bench_pipeline import (
    PipelineRun,
    WorkersFigures,
    as_figures,
    measure_workers,
    offered_latency,
    running_workers,
    wait_settled,
    warm_up,
)
from riskpipe.cli._common import measurement_table, out_console
from riskpipe.client import Observation, Producer
from riskpipe.demo import synthetic_evidence
from riskpipe.logs import configure_logging
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas, connect_store, private_settings, store_config
from riskpipe.worker import Worker, analyzer_config

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from eventstore import CloudEvent
    from riskpipe.server import NatsServer
    from riskpipe.settings import Settings

INGEST_TARGET = 0.9
"""The store's append_many against the windowed publisher with Msg-Id."""
CLIENT_TARGET = 0.9


def _report(
    figures: dict[str, Any],
    measured: Sequence[Measurement],
    title: str,
    unit: str,
    *,
    as_json: bool,
) -> None:
    """The figures as one JSON object, or the measurements as a table."""
    if as_json:
        click.echo(json.dumps(figures))
    else:
        out_console().print(measurement_table(title, unit, measured))


def _verdict(label: str, ratio: float, target: float) -> None:
    verdict = "meets" if ratio >= target else "below"
    click.echo(f"{label} = {ratio:.2f} ({verdict} the {target}x target)")


@bench.command()
@click.option("--events", "count", default=20_000, show_default=True, help="Events per run.")
@click.option("--entities", default=1000, show_default=True, help="Distinct entities.")
@click.option(
    "--runs", default=5, show_default=True, help="Runs per path, after a warm-up; medians."
)
@click.option(
    "--via",
    type=click.Choice(["store", "client", "http"]),
    default="store",
    show_default=True,
    help="Also measure the producer client's record_many (client), or POST /api/evidence"
    f" in batches of {BATCH} (http), against the store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def ingest(count: int, entities: int, runs: int, via: str, as_json: bool) -> None:
    """Append N events through the store and through raw nats-py; print both rates and the ratio.

    With ``--via client``, also through ``riskpipe.client.Producer.record_many``,
    and its ratio to the store's ``append_many`` (target 0.9x). With ``--via
    http``, also posted to the API's ``POST /api/evidence`` in batches of 500
    (served in this process), with each request's p50 and p99.
    """
    if via == "http":
        configure_logging("error")  # a line per request would be most of what is measured
    with private_server() as server:
        measured, http = asyncio.run(_ingest(server.url, count, entities, runs, via=via))
    store_m, raw_m = measured[0], measured[1]
    ratio = store_m.median / raw_m.median
    figures: dict[str, Any] = {
        "events": count, "runs": runs,
        "store_per_s": round(store_m.median), "raw_per_s": round(raw_m.median),
        "ratio": round(ratio, 3), "target": INGEST_TARGET,
        "store_cpu_us": round(store_m.median_cpu_us, 1),
        "raw_cpu_us": round(raw_m.median_cpu_us, 1),
    }  # fmt: skip
    if via == "client":
        client_m = measured[2]
        figures |= {
            "client_per_s": round(client_m.median),
            "client_cpu_us": round(client_m.median_cpu_us, 1),
            "client_ratio": round(client_m.median / store_m.median, 3),
            "client_target": CLIENT_TARGET,
        }
    if http is not None:
        http_m = measured[2]
        figures |= {
            "http_per_s": round(http_m.median),
            "http_cpu_us": round(http_m.median_cpu_us, 1),
            "http_ratio": round(http_m.median / store_m.median, 3),
            "http_batch": BATCH,
            "http_requests": len(http.seconds),
            "http_p50_ms": http.percentile_ms(50),
            "http_p99_ms": http.percentile_ms(99),
        }
    title = f"ingest: {count} events x {runs} runs"
    _report(figures, measured, title, "events/s", as_json=as_json)
    if not as_json:
        _verdict("ratio store/raw", ratio, INGEST_TARGET)
        if via == "client":
            _verdict("ratio client/store", figures["client_ratio"], CLIENT_TARGET)
        if http is not None:
            click.echo(
                f"POST /api/evidence, {BATCH} events a request, {figures['http_requests']}"
                f" requests: p50 {figures['http_p50_ms']:.1f} ms,"
                f" p99 {figures['http_p99_ms']:.1f} ms"
            )


async def _ingest(
    url: str, count: int, entities: int, runs: int, *, via: str
) -> tuple[list[Measurement], HttpIngest | None]:
    store = await EventStore.connect(
        url, schemas=build_schemas(), config=topology_config(), name="riskpipe-bench"
    )
    await store.provision()
    producer = await Producer.connect(url) if via == "client" else None
    measured = [
        Measurement("store.append_many (validated, idempotent)"),
        Measurement("raw nats-py pipelined publish + Msg-Id"),
    ]
    if producer is not None:
        measured.append(Measurement("client Producer.record_many (publish's checks)"))
    http = HttpIngest(store) if via == "http" else None
    if http is not None:
        measured.append(Measurement(f"POST /api/evidence, {BATCH} a request (API and client)"))
        await http.__aenter__()
    try:
        # run 0 warms every path up (stream files, connections, caches) and is not counted
        paths: list[Callable[[int], Awaitable[Sample]]] = [
            partial(_store_run, store, count, entities),
            partial(_raw_run, store, url, count, entities),
        ]
        if producer is not None:
            paths.append(partial(_client_run, producer, count, entities))
        if http is not None:
            paths.append(partial(http.run, count, entities))
        for run in range(runs + 1):
            # each run starts with another path: none always meets the fullest stream
            order = [(run + k) % len(paths) for k in range(len(paths))]
            rates = {k: await paths[k](run) for k in order}
            if run:
                for k, measurement in enumerate(measured):
                    measurement.add(rates[k])
    finally:
        if http is not None:
            await http.__aexit__(None, None, None)
        if producer is not None:
            await producer.close()
        await store.close()
    return measured, http


async def _store_run(store: EventStore, count: int, entities: int, run: int) -> Sample:
    events = synthetic_evidence(count, source=f"bench-store-{run}", entities=entities)
    return await timed(count, partial(store.append_many, events))


async def _raw_run(store: EventStore, url: str, count: int, entities: int, run: int) -> Sample:
    raw = [
        (store.subject_of(e), e.model_dump_json(exclude_none=True).encode(), f"raw-{run}:{e.id}")
        for e in synthetic_evidence(count, source=f"bench-raw-{run}", entities=entities)
    ]
    return await timed(count, partial(raw_pipelined_publish, url, raw))


def _observation(event: CloudEvent) -> Observation:
    data = cast("dict[str, Any]", event.data)
    return Observation(
        tenant=event.tenant,
        entity=event.subject,
        id=event.id,
        source=event.source,
        time=event.time,
        pattern=data["pattern"],
        severity=data["severity"],
        confidence=data["confidence"],
        attributes=data["attributes"],
    )


async def _client_run(producer: Producer, count: int, entities: int, run: int) -> Sample:
    """The same evidence as observations, as a service would hand them to the client."""
    events = synthetic_evidence(count, source=f"bench-client-{run}", entities=entities)
    observations = [_observation(e) for e in events]
    return await timed(count, partial(producer.record_many, observations))


PIPELINE_TARGET = 0.8
"""One worker process against the plain loop with the same analyzer."""
SCALE_TARGET = 1.6
"""Two worker processes against one, events/s."""
P99_LIMIT = 2.0
"""Two worker processes' p99 at the offered rate, against one's: stays under this."""
_ONE, _TWO = 1, 2


def _worker_counts(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int]:
    if value is None:
        return []
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise click.BadParameter(f"{value!r} is not a list of distinct process counts, e.g. 1,2")
    return counts


@bench.command()
@click.option("--events", "count", default=20_000, show_default=True, help="Evidence events.")
@click.option("--entities", default=1000, show_default=True, help="Distinct entities.")
@click.option(
    "--rate", default=2000, show_default=True, help="Offered rate in the latency run (/s)."
)
@click.option(
    "--latency-events", default=4000, show_default=True, help="Events in the latency run."
)
@click.option("--runs", default=5, show_default=True, help="Runs per path; medians are reported.")
@click.option(
    "--workers",
    "worker_counts",
    callback=_worker_counts,
    help="Run `riskpipe worker` processes instead of an in-process worker, e.g. 1,2: "
    "each count in turn, sharing the partitions by leases.",
)
@click.option(
    "--review/--no-review",
    default=False,
    show_default=True,
    help="Run the review projection in the workers too: work the plain loop does not do.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_app
def pipeline(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext,
    count: int,
    entities: int,
    rate: int,
    latency_events: int,
    runs: int,
    worker_counts: list[int],
    review: bool,
    as_json: bool,
) -> None:
    """Projection throughput against a raw nats-py loop, and end-to-end latency at a fixed rate.

    The latency run offers evidence from this process to a `riskpipe worker`
    process that has met every entity once (steady state, not first reads).

    With ``--workers 1,2``, each count of worker processes runs against the same
    private server (settled leases first), with the raw loop in the same rounds;
    CPU per event is read from the workers and from the server.
    """
    configure_logging("error", app.settings.log_format)
    run = PipelineRun(
        count, entities, rate, latency_events, runs, analyzer_config(app.settings), review=review
    )
    if worker_counts:
        _pipeline_processes(app.settings, run, worker_counts, as_json=as_json)
        return
    with private_server() as server:
        settings = private_settings(app.settings, server.url, fetch_timeout=0.2, review=review)
        figures = asyncio.run(_pipeline(settings, server, run))
    title = f"pipeline: {count} evidence events x {runs} runs"
    _report(figures, figures.pop("measurements"), title, "events/s", as_json=as_json)
    if as_json:
        return
    _verdict("ratio", figures["ratio"], PIPELINE_TARGET)
    click.echo(
        f"end-to-end latency at {rate}/s offered ({latency_events} events, one warmed"
        f" `riskpipe worker` process): p50 {figures['latency_p50_ms']:.1f} ms,"
        f" p99 {figures['latency_p99_ms']:.1f} ms"
    )


async def _pipeline(settings: Settings, server: NatsServer, run: PipelineRun) -> dict[str, Any]:
    store = await EventStore.connect(
        settings.nats_url, schemas=build_schemas(), config=store_config(settings)
    )
    projection = Measurement("projection (exactly-once, analyzer, metrics)")
    raw = Measurement("plain nats-py loop, same analyzer (pull, orjson, windowed publish)")
    try:
        await store.provision()
        for n in range(run.runs):
            # each run's evidence is new to both durable consumers
            events = synthetic_evidence(run.count, source=f"bench-{n}", entities=run.entities)
            await store.append_many(events)
            worker = Worker(store, settings, CollectorRegistry())
            until_idle = partial(worker.run, asyncio.Event(), until_idle=True, http=False)
            projection.add(await timed(run.count, until_idle))
            loop = partial(
                raw_projection_loop,
                settings.nats_url,
                stream=store.config.stream_for("evidence"),
                filter_subject=f"{store.config.prefix}.evidence.>",
                count=run.count,
                handle=assessing_handler(run.analyzer),
            )
            raw.add(await timed(run.count, loop))
        p50, p99 = await _latency(store, server, settings, run)
    finally:
        await store.close()
    return {
        "events": run.count, "runs": run.runs, "review": run.review,
        "projection_per_s": round(projection.median),
        "raw_per_s": round(raw.median), "ratio": round(projection.median / raw.median, 3),
        "projection_cpu_us": round(projection.median_cpu_us, 1),
        "raw_cpu_us": round(raw.median_cpu_us, 1),
        "target": PIPELINE_TARGET, "rate": run.rate, "latency_p50_ms": round(p50 * 1000, 2),
        "latency_p99_ms": round(p99 * 1000, 2), "measurements": (projection, raw),
    }  # fmt: skip


async def _latency(
    store: EventStore, server: NatsServer, settings: Settings, run: PipelineRun
) -> tuple[float, float]:
    """Offer events at a fixed rate to a warmed ``riskpipe worker``; stored-to-assessed p50, p99.

    The worker runs in a process of its own, as deployed, so the publisher's
    work is not done on the worker's event loop.
    """
    with running_workers(server, 1, settings.fetch_timeout, review=run.review) as workers:
        await wait_settled(store, workers)
        await warm_up(store, run, "bench-warm")
        latency = await offered_latency(store, run)
        workers.check_running()
    return latency


def _pipeline_processes(
    app_settings: Settings, run: PipelineRun, counts: list[int], *, as_json: bool
) -> None:
    with private_server() as server:
        settings = private_settings(app_settings, server.url, fetch_timeout=0.2, review=run.review)
        measured = asyncio.run(_processes(settings, server, run, counts))
    figures: dict[str, Any] = {"events": run.count, "runs": run.runs, "rate": run.rate}
    figures["review"] = run.review
    figures |= as_figures(measured)
    by_count = {row["workers"]: row for row in figures["by_workers"]}
    if _ONE in by_count and _TWO in by_count:
        figures |= {"scale_target": SCALE_TARGET, "p99_limit": P99_LIMIT}
    title = f"pipeline: {run.count} evidence events x {run.runs} runs, worker processes"
    rows = [m for mine in measured for m in (mine.projection, mine.raw)]
    _report(figures, rows, title, "events/s", as_json=as_json)
    if as_json:
        return
    for row in figures["by_workers"]:
        click.echo(
            f"{row['workers']} process(es): server CPU {row['server_cpu_us']} µs/event "
            f"(raw loop: {row['raw_server_cpu_us']}), ratio to raw {row['ratio']:.2f}, "
            f"latency at {run.rate}/s offered p50 {row['latency_p50_ms']:.1f} ms, "
            f"p99 {row['latency_p99_ms']:.1f} ms, leases settled in {row['settle_s']} s"
        )
    if _ONE in by_count and _TWO in by_count:
        _verdict("2 processes / 1", by_count[_TWO]["speedup"], SCALE_TARGET)
        p99 = by_count[_TWO]["p99_vs_one"]
        verdict = "meets" if p99 < P99_LIMIT else "above"
        click.echo(f"p99 2 processes / 1 = {p99:.2f} ({verdict} the under-{P99_LIMIT}x limit)")


async def _processes(
    settings: Settings, server: NatsServer, run: PipelineRun, counts: list[int]
) -> list[WorkersFigures]:
    async with await connect_store(settings, name="riskpipe-bench") as store:
        await store.provision()
        measured = await measure_workers(store, server, settings, run, counts)
        evidence = (await store.stream_state(store.config.stream_for("evidence")))["messages"]
        assessed = (await store.stream_state(store.config.stream_for("risk")))["messages"]
    if assessed != evidence:  # every synthetic evidence is valid: one assessment each
        raise click.ClickException(f"{evidence} evidence events but {assessed} assessments")
    return measured


REPLAY_TARGET = 0.7
"""The replay against raw batched pulls of both streams on as many processes."""


@bench.command("replay")
@click.option("--events", "count", default=20_000, show_default=True, help="Evidence events.")
@click.option("--entities", default=1000, show_default=True, help="Distinct entities.")
@click.option("--runs", default=3, show_default=True, help="Runs per path; medians are reported.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Replay processes, as `riskpipe replay --jobs` [default: as replay chooses].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_app
def bench_replay(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext, count: int, entities: int, runs: int, jobs: int | None, as_json: bool
) -> None:
    """Replay verification against raw batched pulls of the same log, same run, same processes.

    The replay runs as `riskpipe replay` does: by default in as many processes
    as it chooses on this machine. Also measures the store's own decoded read
    of both streams: what one process reads before it verifies anything.
    """
    configure_logging("error", app.settings.log_format)
    with private_server() as server:
        settings = private_settings(app.settings, server.url, fetch_timeout=0.2)
        replay_m, decoded_m, raw_m, used = asyncio.run(
            _bench_replay(settings, count, entities, runs, jobs)
        )
    ratio = replay_m.median / raw_m.median
    figures: dict[str, Any] = {
        "events": count, "runs": runs, "jobs": used, "replay_per_s": round(replay_m.median),
        "store_read_per_s": round(decoded_m.median), "raw_per_s": round(raw_m.median),
        "ratio": round(ratio, 3), "target": REPLAY_TARGET,
        "replay_cpu_us": round(replay_m.median_cpu_us, 1),
        "raw_cpu_us": round(raw_m.median_cpu_us, 1),
    }  # fmt: skip
    title = f"replay: {count} evidence + {count} assessments x {runs} runs, {used} process(es)"
    _report(figures, (replay_m, decoded_m, raw_m), title, "evidence/s", as_json=as_json)
    if not as_json:
        _verdict("ratio replay/raw", ratio, REPLAY_TARGET)


async def _bench_replay(
    settings: Settings, count: int, entities: int, runs: int, jobs: int | None
) -> tuple[Measurement, Measurement, Measurement, int]:
    replay_m = Measurement("riskpipe replay (decode, re-derive, compare)")
    decoded_m = Measurement("store.read_all of EVIDENCE + RISK (decoded, no checks)")
    parts = jobs or auto_jobs(count)
    raw_m = Measurement(f"raw nats-py batched pulls, EVIDENCE + RISK, {parts} process(es)")
    async with await connect_store(settings, name="riskpipe-bench") as store:
        await store.provision()
        await store.append_many(synthetic_evidence(count, source="bench", entities=entities))
        await Worker(store, settings, CollectorRegistry()).run(
            asyncio.Event(), until_idle=True, http=False
        )
        streams = [store.config.stream_for("evidence"), store.config.stream_for("risk")]
        used: list[int] = []
        for _ in range(runs):
            read = partial(_raw_read, settings.nats_url, streams, parts, 2 * count)
            raw_m.add(await timed(count, read))
            decoded_m.add(await timed(count, partial(_decoded_read, store, streams)))
            replay_m.add(await timed(count, partial(_verified, store, count, jobs, used)))
    return replay_m, decoded_m, raw_m, max(used, default=1)


def _read_part(url: str, streams: list[str], part: int, parts: int) -> int:
    """In a child process: its slice of each stream, read raw (see ``raw_pull_read``)."""
    return asyncio.run(raw_pull_read(url, streams, part=part, parts=parts))


async def _raw_read(url: str, streams: list[str], parts: int, expected: int) -> None:
    """The replay's ceiling: ``parts`` processes, each pulling its slice of both streams.

    Forked as the replay forks its processes, and waited for, so that their
    CPU is counted with this process's.
    """
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(parts, mp_context=context) as pool:
        read = await asyncio.gather(
            *(loop.run_in_executor(pool, _read_part, url, streams, n, parts) for n in range(parts))
        )
    if sum(read) != expected:
        raise click.ClickException(f"the raw read found {sum(read)} messages, not {expected}")


async def _decoded_read(store: EventStore, streams: list[str]) -> None:
    for stream in streams:
        async for _ in store.read_all(stream=stream):
            pass


async def _verified(store: EventStore, count: int, jobs: int | None, used: list[int]) -> None:
    report = await replay(store, jobs=jobs)
    if not report.ok or report.totals.identical != count:
        raise click.ClickException(f"the replay did not verify: {report.totals.as_dict()}")
    used.append(report.jobs)
