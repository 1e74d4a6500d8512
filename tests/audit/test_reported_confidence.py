"""Reported and default confidence stay apart, from the store to the audit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.pipeline import run_worker

from projections.audit import explain, export_file, export_rows, read_export

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _two_events(store: EventStore, url: str) -> None:
    """One evidence event reporting confidence 1.0, one reporting none."""
    await store.append(evidence("reported", minute=0, confidence=1.0))
    await store.append(evidence("silent", minute=1))
    await run_worker(store, url)


async def test_the_stored_form_has_no_default_confidence(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Stored evidence holds confidence only when reported, and the analyzer counts it so."""
    await _two_events(store, nats_server.url)
    stored = {rec.event.id: rec.event.data async for rec in store.read("t1", "e1") if rec.event}
    assert stored["reported"]["confidence"] == 1.0  # type: ignore[index]
    assert "confidence" not in stored["silent"]  # type: ignore[operator]
    risk = [rec.event.data async for rec in store.read("t1", "e1", category="risk") if rec.event]
    completeness = [d["assessment"]["confidence_factors"]["completeness"] for d in risk]  # type: ignore[index,call-overload]
    assert completeness[0] == 1.0
    assert completeness[1] < 1.0, "evidence without a confidence is not counted as carrying one"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_keeps_reported_and_default_confidence_apart(
    nats_server: NatsServer, store: EventStore, tmp_path: Path, fmt: str
) -> None:
    """Export gives the reported confidence or none, and the confidence used beside it."""
    await _two_events(store, nats_server.url)
    rows = {row.evidence_id: row async for row in export_rows(store, "t1")}
    assert (rows["reported"].evidence_confidence, rows["reported"].evidence_confidence_used) == (
        1.0,
        1.0,
    )
    assert (rows["silent"].evidence_confidence, rows["silent"].evidence_confidence_used) == (
        None,
        1.0,
    )
    path = tmp_path / f"out.{fmt}"
    await export_file(store, path, fmt, "t1")  # type: ignore[arg-type]
    assert {row.evidence_id: row for row in read_export(path, fmt)} == rows  # type: ignore[arg-type]
    if fmt == "jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["evidence_confidence"] for line in lines] == [1.0, None]


async def test_explain_keeps_reported_and_default_confidence_apart(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Explain's JSON timeline has confidence null when unreported, and the value used."""
    await _two_events(store, nats_server.url)
    document = (await explain(store, "t1", "e1")).as_dict()
    [reported, silent] = [entry["evidence"] for entry in document["timeline"]]
    assert (reported["confidence"], reported["confidence_used"]) == (1.0, 1.0)
    assert (silent["confidence"], silent["confidence_used"]) == (None, 1.0)
