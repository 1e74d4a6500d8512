"""Export: evidence joined with the assessment or dead letter it caused; both formats round-trip."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest
from support.pipeline import run_worker

from projections.audit import export_file, export_rows, read_export
from riskpipe.demo import POISON, demo_evidence

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _pipeline(store: EventStore, url: str) -> None:
    await store.append_many(demo_evidence(random.Random(3), events=80))  # noqa: S311 - sample data
    for n, (tenant, entity, payload) in enumerate(POISON):
        await store.append_unchecked("evidence", tenant, entity, payload, msg_id=f"poison:{n}")
    await run_worker(store, url)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_round_trips(
    nats_server: NatsServer, store: EventStore, tmp_path: Path, fmt: str
) -> None:
    """The file reads back into exactly the rows exported, joined to the right assessments."""
    await _pipeline(store, nats_server.url)
    rows = [row async for row in export_rows(store, "acme")]
    path = tmp_path / f"acme.{fmt}"
    written = await export_file(store, path, fmt, "acme")  # type: ignore[arg-type]
    assert written == len(rows)
    assert read_export(path, fmt) == rows  # type: ignore[arg-type]
    assessed = [row for row in rows if row.outcome == "assessed"]
    assert all(row.causation_id == row.evidence_id for row in assessed)
    risk = {}
    async for rec in store.read_all(stream=store.config.stream_for("risk")):
        assert rec.event is not None
        risk[rec.sequence] = rec.event
    for row in assessed:
        event = risk[row.assessment_sequence or 0]
        assert (event.data or {})["evidence"]["sequence"] == row.evidence_sequence  # type: ignore[index,call-overload]
        assert event.subject == row.entity
    letters = [row for row in rows if row.outcome == "dead_lettered"]
    assert {row.entity for row in letters} == {"user-mallory"}
    assert all(row.error_type for row in letters)
    assert {row.tenant for row in rows} == {"acme"}


async def test_export_of_one_entity(nats_server: NatsServer, store: EventStore) -> None:
    """An entity's export holds its evidence only, in stream order."""
    await _pipeline(store, nats_server.url)
    rows = [row async for row in export_rows(store, "globex", entity="user-dave")]
    assert rows
    assert {row.entity for row in rows} == {"user-dave"}
    sequences = [row.evidence_sequence for row in rows]
    assert sequences == sorted(sequences)
    assert all(row.outcome == "assessed" and row.level for row in rows)
