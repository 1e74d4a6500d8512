"""``riskpipe bench learn``: ``riskpipe learn`` over a large synthetic history, timed and weighed.

The history is a seeded synthetic world (docs/learning.md) stored in a
private server: evidence and outcomes as producers would have recorded them.
``riskpipe learn`` then runs as a user runs it, in a process of its own, so
that its wall time, CPU time and peak resident memory are its alone. The
floor beside it is a plain nats-py read of the same two streams: no learning
can be faster than reading its input.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from eventstore import EventStore
from eventstore.baselines import raw_ordered_read
from riskpipe.bench import private_server
from riskpipe.cli._app import AppContext, bench, pass_app
from riskpipe.cli._common import add_columns, out_console, run
from riskpipe.logs import configure_logging
from riskpipe.wiring import build_schemas, private_environment, private_settings, store_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore import CloudEvent
    from projections.learning import World
    from riskpipe.settings import Settings

LEARN_TARGET_S = 120.0
"""Building the labelled set and fitting, over the default history: at most this."""
_CHUNK = 10_000
_HORIZON_S = 86_400.0
_SPAN_S = 365 * 86_400.0


@bench.command("learn")
@click.option("--events", default=1_000_000, show_default=True, help="Evidence events.")
@click.option("--outcomes", default=20_000, show_default=True, help="Outcomes (about).")
@click.option("--entities", default=50_000, show_default=True, help="Distinct entities.")
@click.option("--seed", default=1, show_default=True, help="The synthetic world's seed.")
@click.option("--json", "as_json", is_flag=True, help="One compact JSON line.")
@pass_app
def bench_learn(  # noqa: PLR0913, PLR0917 - one click option each
    app: AppContext, events: int, outcomes: int, entities: int, seed: int, as_json: bool
) -> None:
    """Time `riskpipe learn` (labelled set and fit) over a year of synthetic history.

    Prints the time of each step, the CPU microseconds per evidence event,
    the peak resident memory of the learn process, and the time a plain
    nats-py read of the same streams takes.
    """
    if not 0 < outcomes < events:
        raise click.BadParameter(
            "give fewer outcomes than events, and some", param_hint="--outcomes"
        )
    configure_logging("error", app.settings.log_format)
    world = _world(seed, events, outcomes, entities)
    with private_server() as server, tempfile.TemporaryDirectory(prefix="riskpipe-bench-") as tmp:
        settings = private_settings(app.settings, server.url, data_dir=Path(tmp))
        loaded = run(_load(settings, world))
        read_s = _timed_read(server.url)
        learned = _learn(server.url, world, Path(tmp))
    figures = {
        "events": events,
        "outcomes": len(world.outcome_time),
        "entities": entities,
        "load_s": round(loaded, 1),
        "raw_read_s": round(read_s, 2),
        **learned,
        "target_s": LEARN_TARGET_S,
        "meets_target": learned["learn_s"] <= LEARN_TARGET_S,
    }
    if as_json:
        click.echo(json.dumps(figures, sort_keys=True, separators=(",", ":")))
        return
    _print(figures)


def _world(seed: int, events: int, outcomes: int, entities: int) -> World:
    """A year of ``events`` evidence, with about ``outcomes`` outcomes, half of them positive.

    The year ends at the start of today (UTC): ``riskpipe learn`` takes no
    window ending in the future.
    """
    from projections.learning import make_world  # noqa: PLC0415 - needs the learn extra

    positives = outcomes / 2
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return make_world(
        seed=seed,
        start=today - timedelta(seconds=_SPAN_S),
        entities=entities,
        events=events,
        span_seconds=_SPAN_S,
        horizon_seconds=_HORIZON_S,
        positive_rate=positives / events,
        benign_share=(outcomes - positives) / (events - positives),
    )


async def _load(settings: Settings, world: World) -> float:
    """Store the world's evidence and outcomes; the seconds it took."""
    store = await EventStore.connect(
        settings.nats_url, schemas=build_schemas(), config=store_config(settings), name="bench"
    )
    started = time.perf_counter()
    try:
        await store.provision()
        for events in (world.evidence_events(), world.outcome_events()):
            for chunk in _chunks(events):
                failed = [r for r in await store.append_many(chunk) if isinstance(r, Exception)]
                if failed:
                    raise click.ClickException(f"storing the history failed: {failed[0]}")
    finally:
        await store.close()
    return time.perf_counter() - started


def _chunks(events: Iterator[CloudEvent]) -> Iterator[list[CloudEvent]]:
    while chunk := list(itertools.islice(events, _CHUNK)):
        yield chunk


def _timed_read(url: str) -> float:
    started = time.perf_counter()
    run(raw_ordered_read(url, ["EVIDENCE", "OUTCOMES"], timeout=600.0))
    return time.perf_counter() - started


def _learn(url: str, world: World, directory: Path) -> dict[str, Any]:
    """Run ``riskpipe learn`` in a process of its own: its figures, time, CPU and peak memory."""
    cut = world.at(world.span_seconds * 0.7)
    command = [
        sys.executable, "-m", "riskpipe", "learn",
        "--since", world.start.isoformat(), "--until", world.until.isoformat(),
        "--cut", cut.isoformat(), "--horizon", f"{world.horizon_seconds:g}",
        "--no-report", "--no-propose", "--json",
    ]  # fmt: skip
    out = directory / "learn.json"
    started = time.perf_counter()
    with (
        out.open("wb") as stdout,
        subprocess.Popen(  # noqa: S603 - our own command line, no shell
            command, stdout=stdout, stderr=subprocess.PIPE, env=private_environment(os.environ, url)
        ) as child,
    ):
        assert child.stderr is not None  # noqa: S101 - asked for above
        errors = child.stderr.read()
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise click.ClickException(f"riskpipe learn failed: {errors.decode(errors='replace')}")
    body = json.loads(out.read_bytes())
    cpu = usage.ru_utime + usage.ru_stime
    evidence = int(body["evidence_read"])
    return {
        "learn_s": round(elapsed, 1),
        "learn_cpu_s": round(cpu, 1),
        "cpu_us_per_evidence": round(cpu * 1e6 / max(evidence, 1), 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "timings": body["timings"],
        "evidence_read": evidence,
        "training_examples": body["training"]["examples"],
        "pr_auc": {k: body["metrics"][k]["pr_auc"] for k in ("base", "proposed")},
    }


def _print(figures: dict[str, Any]) -> None:
    timings = figures["timings"]
    table = Table(
        title=f"riskpipe learn over {figures['events']:,} evidence and"
        f" {figures['outcomes']:,} outcomes ({figures['entities']:,} entities, a year)"
    )
    add_columns(table, "step", "seconds")
    table.add_row("store the history (not timed below)", f"{figures['load_s']:.1f}")
    table.add_row("plain nats-py read of both streams (the floor)", f"{figures['raw_read_s']:.1f}")
    table.add_row("learn, the whole process", f"{figures['learn_s']:.1f}")
    table.add_row("  read and fold the evidence, label it", f"{timings['dataset_s']:.1f}")
    table.add_row("  fit", f"{timings['fit_s']:.1f}")
    table.add_row("  evaluate", f"{timings['evaluate_s']:.1f}")
    out_console().print(table)
    verdict = "meets" if figures["meets_target"] else "misses"
    click.echo(
        f"learn: {figures['learn_s']:.1f} s ({verdict} the {figures['target_s']:.0f} s target),"
        f" {figures['cpu_us_per_evidence']:.1f} CPU µs per evidence,"
        f" peak memory {figures['peak_rss_mib']} MiB;"
        f" PR-AUC base {figures['pr_auc']['base']} -> proposed {figures['pr_auc']['proposed']}"
    )


__all__ = ["LEARN_TARGET_S", "bench_learn"]
