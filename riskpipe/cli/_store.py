"""Commands on the event store: ``init``, ``publish``, ``events``, ``schema``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import click
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from eventstore import MAX_PARTITIONS
from eventstore.errors import (
    ConsumerDriftError,
    DecodeError,
    EventStoreError,
    NotProvisionedError,
    PartitionsMismatchError,
)
from projections import consumer_name, expected_consumer
from projections.learning import OUTCOME_RECORDED
from riskpipe.asyncapi import asyncapi_document
from riskpipe.cli._app import AppContext, main, pass_app
from riskpipe.cli._common import (
    add_columns,
    connect_provisioned,
    err_console,
    out_console,
    plain,
    run,
)
from riskpipe.ingest import PUBLISHABLE_TYPES, NotEvidenceError, outcomes_unstorable, publishable
from riskpipe.telemetry import configure_tracing
from riskpipe.wiring import build_schemas, connect_store, store_config

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore import CloudEvent, EventStore, ProvisionReport

CHUNK = 2000


@main.command()
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=None,
    help="Evidence partitions P, fixed when the store is made [env RISKPIPE_PARTITIONS;"
    " default 16]. Workers share out the partitions; more than the workers you will"
    " ever run buys nothing.",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 5),
    default=None,
    help="Copies of every stream, bucket and consumer, one per node of a cluster"
    " [env RISKPIPE_REPLICAS; default 1]. 3 on a 3-node cluster survives a node down.",
)
@pass_app
def init(app: AppContext, partitions: int | None, replicas: int | None) -> None:
    """Create the streams and buckets (idempotent); report any that drifted.

    The projection's durable consumers (one per partition), once a worker
    created them, are checked too: changed by someone else, a consumer may
    deliver nothing while looking healthy. P cannot change once the store
    is made: asking for another P is reported as drift.

    \b
    Exit status:
      0  everything exists as expected (created now or found)
      1  a stream exists with other settings, or the consumer was changed by
         someone else (drift; left unchanged), or an error
    """  # noqa: D301 - \b keeps click from rewrapping the table
    if partitions is not None:
        app.settings = app.settings.model_copy(update={"partitions": partitions})
    if replicas is not None:
        app.settings = app.settings.model_copy(update={"replicas": replicas})
    # P asked for by flag or environment: a store made with another P is drift
    asked = app.settings.partitions if "partitions" in app.settings.model_fields_set else None
    report, consumer_drift = run(_init(app, partitions if partitions is not None else asked))
    for verb, names in (("created", report.created), ("found", report.found)):
        for name in names:
            click.echo(f"{verb:<8} {name}")
    for drift in report.drifted:
        click.echo(f"DRIFTED  {drift}", err=True)
    if consumer_drift is not None:
        click.echo(f"CHANGED BY SOMEONE ELSE  {consumer_drift}", err=True)
    if not report.ok:
        raise click.ClickException(
            "some streams differ from the expected config; they were left unchanged"
        )
    if consumer_drift is not None:
        raise click.ClickException(
            f"consumer {consumer_drift.consumer} was changed by someone else; it was left"
            " unchanged and workers refuse to run on it"
        )


async def _init(
    app: AppContext, asked: int | None
) -> tuple[ProvisionReport, ConsumerDriftError | None]:
    async with await connect_store(app.settings, name="riskpipe-init") as store:
        report = await store.provision()
        recorded = store.config.partitions  # the stream's, when it already existed
        if report.ok and asked is not None and asked != recorded:
            stream = store.config.stream_for("evidence")
            report.drifted.append(PartitionsMismatchError(stream, recorded, asked))
        if not report.ok:
            return report, None
        for partition in range(store.config.partitions):
            name = consumer_name(app.settings.projection, partition)
            try:
                await store.consumer(name).verify(
                    expected_consumer(store, partition, source="evidence")
                )
            except NotProvisionedError:  # no worker has run yet: it creates the consumer
                continue
            except ConsumerDriftError as exc:
                return report, exc
        return report, None


@dataclass
class PublishSummary:
    """What a publish run did."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, line: int, exc: Exception) -> None:
        """Count a rejected line and say why on stderr."""
        self.rejected += 1
        self.errors.append({"line": line, "error": str(exc), "type": type(exc).__name__})
        click.echo(f"line {line}: {exc}", err=True)

    def line(self) -> str:
        """The one-line summary."""
        return f"stored={self.stored} duplicates={self.duplicates} rejected={self.rejected}"


@main.command()
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@pass_app
def publish(app: AppContext, file: IO[bytes], as_json: bool) -> None:
    """Append evidence and outcomes from FILE (JSONL, one event per line; - for stdin).

    Invalid lines are reported as `line N: reason` on stderr and not appended.
    Re-running the same file stores nothing new.

    \b
    Exit status:
      0  every line was stored or was a duplicate
      1  a line was rejected (the valid lines are stored), or an error
    """  # noqa: D301 - \b keeps click from rewrapping the table
    summary = run(_publish(app, file))
    if as_json:
        click.echo(json.dumps({**summary.__dict__}, indent=None))
    else:
        click.echo(summary.line())
    if summary.rejected:
        sys.exit(1)


def _lines(file: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(file, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield number, line


async def _publish(app: AppContext, file: IO[bytes]) -> PublishSummary:
    provider = configure_tracing(app.settings, service="riskpipe-publish")
    try:
        return await _publish_file(app, file)
    finally:
        if provider is not None:
            provider.shutdown()


async def _publish_file(app: AppContext, file: IO[bytes]) -> PublishSummary:
    summary = PublishSummary()
    async with await connect_provisioned(
        app.settings, name="riskpipe-publish", categories=("evidence",)
    ) as store:
        with _progress() as progress:
            task = progress.add_task("publishing", total=None)
            chunk: list[tuple[int, bytes]] = []
            outcomes = _OutcomesStream()
            for item in _lines(file):
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    await _publish_chunk(store, chunk, summary, outcomes)
                    progress.advance(task, len(chunk))
                    chunk = []
            await _publish_chunk(store, chunk, summary, outcomes)
            progress.advance(task, len(chunk))
    return summary


def publish_schema() -> dict[str, Any]:
    """The JSON Schema of one line :func:`publishable` accepts (``riskpipe schema --publish``).

    One of the evidence events, one per version (``type`` tells them apart;
    left out, it is v1), or an outcome. Each is the event's schema plus the
    one rule that ties two fields: an event without ``data.observed_at`` was
    observed at its ``time``, so that ``time`` must then be a time
    ``observed_at`` could hold.
    """
    schemas = build_schemas()
    versions: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for name in PUBLISHABLE_TYPES:
        whole = schemas.event_json_schema(name)
        whole.pop("$schema")
        defs.update(whole.pop("$defs", {}))
        observed = whole["properties"]["data"]["properties"]["observed_at"]
        (as_time,) = [choice for choice in observed["anyOf"] if choice.get("type") == "string"]
        unobserved = {"properties": {"data": {"properties": {"observed_at": {"const": None}}}}}
        versions.append({**whole, "if": unobserved, "then": {"properties": {"time": as_time}}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "riskpipe evidence or outcome event",
        "oneOf": versions,
        **({"$defs": defs} if defs else {}),
    }


class _OutcomesStream:
    """Whether outcome lines can be stored, looked up once, at the first of them.

    ``riskpipe publish`` checks ``EVIDENCE`` before it starts, and ``OUTCOMES``
    only when the file holds an outcome, so a file of evidence needs no more
    than it did. Without the stream each outcome append would fail only after
    its retries, a quarter of a minute a line.
    """

    def __init__(self) -> None:
        self.checked = False
        self.error: EventStoreError | None = None

    async def unstorable(self, store: EventStore) -> EventStoreError | None:
        """Why outcomes cannot be stored (``OUTCOMES`` missing or not visible), or ``None``."""
        if not self.checked:
            self.error = await outcomes_unstorable(store)
            self.checked = True
        return self.error


async def _publish_chunk(
    store: EventStore,
    chunk: list[tuple[int, bytes]],
    summary: PublishSummary,
    outcomes: _OutcomesStream,
) -> None:
    valid: list[tuple[int, CloudEvent]] = []
    for number, line in chunk:
        try:
            event = publishable(store.schemas, line, max_bytes=store.config.max_payload_bytes)
        except (DecodeError, NotEvidenceError) as exc:
            summary.reject(number, exc)
            continue
        valid.append((number, event))
    if any(event.type == OUTCOME_RECORDED for _, event in valid):
        unstorable = await outcomes.unstorable(store)
        if unstorable is not None:  # said at once, not after a time-out per line
            for number, event in valid:
                if event.type == OUTCOME_RECORDED:
                    summary.reject(number, unstorable)
            valid = [(n, e) for n, e in valid if e.type != OUTCOME_RECORDED]
    results = await store.append_many(event for _, event in valid)
    for (number, _), result in zip(valid, results, strict=True):
        if isinstance(result, EventStoreError):
            summary.reject(number, result)
        elif result.duplicate:
            summary.duplicates += 1
        else:
            summary.stored += 1


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        disable=not sys.stderr.isatty(),
        transient=True,
    )


@main.command()
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--entity", required=True, help="Entity id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_app
def events(app: AppContext, tenant: str, entity: str, as_json: bool) -> None:
    """List an entity's stored evidence in order."""
    records = run(_events(app, tenant, entity))
    if as_json:
        for rec in records:
            click.echo(json.dumps(rec, sort_keys=True))
        return
    table = Table(title=plain(f"evidence for {tenant}/{entity}"))
    add_columns(table, "seq", "stored at", "id", "source", "pattern", "severity", "confidence")
    for rec in records:
        ev, data = rec.get("event") or {}, (rec.get("event") or {}).get("data") or {}
        table.add_row(
            str(rec["sequence"]), rec["stored_at"], plain(ev.get("id", "?")),
            plain(ev.get("source", "?")), plain(data.get("pattern", rec.get("error", "?"))),
            data.get("severity", "?"), str(data.get("confidence", "none (1.0 used)")),
        )  # fmt: skip
    out_console().print(table)
    click.echo(f"{len(records)} event(s)")


async def _events(app: AppContext, tenant: str, entity: str) -> list[dict[str, Any]]:
    try:
        async with await connect_provisioned(app.settings, name="riskpipe-events") as store:
            return [
                {
                    "sequence": rec.sequence,
                    "stored_at": rec.stored_at.isoformat(),
                    "event": rec.event.to_json_dict() if rec.event else None,
                    **({"error": str(rec.error)} if rec.error else {}),
                }
                async for rec in store.read(tenant, entity)
            ]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@pass_app
def asyncapi(app: AppContext, as_json: bool) -> None:
    """Print the AsyncAPI 3.0 document of every channel, its messages and who may use it."""
    document = asyncapi_document(build_schemas(), store_config(app.settings))
    if as_json:
        click.echo(json.dumps(document))  # one line, as every --json output
    else:
        click.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)


@main.command()
@click.option("--type", "event_type", default=None, help="Only this event type.")
@click.option(
    "--publish",
    "for_publish",
    is_flag=True,
    help="Only the schema of one line `riskpipe publish` accepts: an evidence or outcome event.",
)
def schema(event_type: str | None, for_publish: bool) -> None:
    """Print the JSON Schema of the envelope and of every event type's data."""
    if for_publish:
        if event_type is not None:
            raise click.UsageError("give --type or --publish, not both")
        click.echo(json.dumps(publish_schema(), indent=2, sort_keys=True))
        return
    schemas = build_schemas().json_schemas()
    if event_type is not None:
        if event_type not in schemas:
            raise click.BadParameter(f"unknown type; known: {', '.join(sorted(schemas))}")
        schemas = {event_type: schemas[event_type]}
    click.echo(json.dumps(schemas, indent=2, sort_keys=True))
