"""The demo's learning loop: learn from outcomes, shadow the proposal, promote it, verify.

On the demo's private server, after the main run: a seeded synthetic history
(evidence and the outcomes that followed, docs/learning.md) is stored and
scored, ``riskpipe learn``'s steps fit a config version from it, a shadow run
scores every evidence with that version beside the live one, the version is
promoted, new evidence is scored with it, and the replay verifies the whole
log across the promotion.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from prometheus_client import CollectorRegistry

from analyzers import AnalyzerConfig
from projections.audit import replay
from projections.learning import promote, propose, read_config_book
from projections.review import Actor
from projections.shadow import shadow_report
from riskpipe.worker import Worker, shadow_run

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventstore import CloudEvent, EventStore
    from riskpipe.settings import Settings

VERSION = "learned-demo"
"""The version the demo's learning loop proposes and promotes."""
_DAY = 86_400.0
_TENANT = "world"
_ACTOR = Actor(name="riskpipe-demo", role="operator")


def learning_available() -> bool:
    """Whether the learn extra (numpy, scipy, matplotlib) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("numpy", "scipy"))


def _now() -> datetime:
    return datetime.now(UTC)


async def learning_loop(store: EventStore, settings: Settings, seed: int) -> bool:
    """One learn, shadow, promote cycle on a synthetic history; whether the replay verified."""
    from projections.learning import build_dataset, evaluate, fit, make_world  # noqa: PLC0415

    world = make_world(
        seed=seed, entities=300, events=3000, span_seconds=90 * _DAY, horizon_seconds=_DAY,
        positive_rate=0.1, tenant=_TENANT,
    )  # fmt: skip
    click.echo(
        f"\nthe learning loop: {len(world.time)} evidence of tenant {_TENANT!r} over 90 days"
        f" and the {len(world.outcome_time)} outcomes that followed"
        " (docs/learning.md)"
    )
    await _store(store, itertools.chain(world.evidence_events(), world.outcome_events()))
    await _work(store, settings)
    dataset = await build_dataset(
        store, base=AnalyzerConfig(), since=world.start, until=world.until, tenant=_TENANT
    )
    cut = world.start.timestamp() + 0.7 * world.span_seconds
    learned = fit(dataset, horizon=world.horizon_seconds, cut=cut)
    metrics = evaluate(learned).metrics()
    base, proposed = metrics["base"], metrics["proposed"]
    book = await read_config_book(store)
    await propose(
        store, book, learned.config, version=VERSION, by=_ACTOR, clock=_now,
        training=learned.training_window(),
        metrics={"pr_auc": proposed["pr_auc"], "base_pr_auc": base["pr_auc"]},
        reason="fitted by the demo's learning loop",
    )  # fmt: skip
    weights = ", ".join(f"{p}={w:.2f}" for p, w in learned.config.pattern_weights.items())
    click.echo(
        f"learn: proposed {VERSION} ({weights}); on the last 30% held out, PR-AUC"
        f" {base['pr_auc']:.3f} -> {proposed['pr_auc']:.3f}, ROC-AUC {base['roc_auc']:.3f} ->"
        f" {proposed['roc_auc']:.3f} (`riskpipe learn`)"
    )
    await _work(store, settings, shadow=VERSION)
    report = await shadow_report(store, VERSION, tenant=_TENANT)
    click.echo(
        f"shadow: {report.compared} evidence scored by both; {report.raised} assessments would"
        f" rise a level and {report.lowered} fall; alerts {report.live_alerts} live ->"
        f" {report.shadow_alerts} shadow (`riskpipe worker --shadow`, `riskpipe shadow report`)"
    )
    promoted = await promote(
        store, book, VERSION, by=_ACTOR, reason="the demo: better PR-AUC on the holdout",
        clock=_now,
    )  # fmt: skip
    later = make_world(
        seed=seed + 1, entities=300, events=300, span_seconds=7 * _DAY, horizon_seconds=3600.0,
        start=world.until, tenant=_TENANT,
    )  # fmt: skip
    await _store(store, later.evidence_events())
    await _work(store, settings)
    fingerprint = learned.config.fingerprint()
    after = await _scored_since(store, promoted.effective_from)
    with_it = sum(1 for found in after if found == fingerprint)
    click.echo(
        f"promote: {VERSION} is live from evidence {promoted.effective_from}; the {len(after)}"
        f" assessments since name it in {with_it} (`riskpipe config promote`)"
    )
    audit = await replay(store, projection=settings.projection)
    totals = audit.totals
    click.echo(
        f"replay: {totals.identical} of {totals.checked} assessments re-derived identically,"
        f" {totals.config_mismatch} config mismatches, across the promotion (`riskpipe replay`)"
    )
    return audit.ok and with_it == len(after) > 0


async def _store(store: EventStore, events: Iterable[CloudEvent]) -> None:
    pending = iter(events)
    while chunk := list(itertools.islice(pending, 5000)):
        failed = [r for r in await store.append_many(chunk) if isinstance(r, Exception)]
        if failed:
            raise click.ClickException(f"storing the demo's history failed: {failed[0]}")


async def _work(store: EventStore, settings: Settings, *, shadow: str | None = None) -> None:
    run = await shadow_run(store, shadow) if shadow is not None else None
    worker_settings = settings.model_copy(update={"fetch_timeout": 0.2})
    await Worker(store, worker_settings, CollectorRegistry(), shadow=run).run(
        asyncio.Event(), until_idle=True, http=False
    )


async def _scored_since(store: EventStore, position: int) -> list[str]:
    """The config fingerprint of each assessment of evidence at or after ``position``."""
    found = []
    async for rec in store.read_all(stream=store.config.stream_for("risk")):
        data = rec.event.data if rec.event is not None else None
        if isinstance(data, dict) and int(str(data["cursor"])) >= position:
            assessment = data["assessment"]
            if isinstance(assessment, dict):
                found.append(str(assessment["config_fingerprint"]))
    return found
