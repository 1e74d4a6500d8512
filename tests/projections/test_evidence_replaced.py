"""A re-created evidence stream under recorded assessments stops the worker, never skips evidence.

Assessments name their evidence by stream sequence. A deleted and re-created
EVIDENCE stream starts its sequences over, so its new evidence would take the
positions of evidence already assessed: taken for handled and skipped, its
assessments dropped as duplicates. The worker refuses to run instead, and
``riskpipe status`` says why, until the stream is restored or the projection
is started over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import read_streams, run_worker

from projections.errors import EvidenceReplacedError
from projections.risk import verify_evidence_identity

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _append(store: EventStore, ids: list[str]) -> None:
    for n, event_id in enumerate(ids):
        await store.append(evidence(event_id, tenant="acme", entity=f"e{n % 2}", minute=n))


async def _recreate_evidence(store: EventStore) -> None:
    await store.client.api(f"STREAM.DELETE.{store.config.stream_for('evidence')}")
    await store.provision()


async def _assessed_then_replaced(store: EventStore, url: str, new: list[str]) -> None:
    """Three evidence events assessed, then EVIDENCE re-created holding ``new`` (not assessed)."""
    await _append(store, ["old-1", "old-2", "old-3"])
    await run_worker(store, url)
    await _recreate_evidence(store)
    await _append(store, new)


async def test_the_worker_refuses_a_recreated_evidence_stream_and_status_says_why(
    nats_server: NatsServer, store: EventStore
) -> None:
    """New evidence on a re-created EVIDENCE stream is not skipped as old: the worker stops."""
    await _assessed_then_replaced(store, nats_server.url, ["new-1", "new-2", "new-3", "new-4"])
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    worked = riskpipe("worker", "--until-idle", "--no-http", env=env)
    assert worked.returncode == 1, worked.stderr
    (line,) = worked.stderr.strip().splitlines()
    assert "EVIDENCE sequence 3 holds test-src/new-3" in line
    assert "deleted and created again" in line
    streams = await read_streams(store)
    assert len(streams.assessments) == 3  # the old ones; nothing new was skipped or scored
    status = riskpipe("status", env=env)
    assert status.returncode == 3, status.stdout
    assert "EVIDENCE REPLACED: EVIDENCE sequence 3 holds" in status.stdout
    as_json = riskpipe("status", "--json", env=env)
    assert as_json.returncode == 3
    assert "deleted and created again" in orjson.loads(as_json.stdout)["evidence_replaced"]


async def test_fewer_new_evidence_than_assessed_is_refused_too(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A re-created stream still short of the last assessed position holds nothing there."""
    await _assessed_then_replaced(store, nats_server.url, ["new-1"])
    with pytest.raises(EvidenceReplacedError, match="sequence 3 holds nothing"):
        await run_worker(store, nats_server.url)


async def test_started_over_the_projection_scores_the_new_stream(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Deleting RISK, DLQ and the checkpoint (docs/projections.md) lets every new evidence score."""
    await _assessed_then_replaced(store, nats_server.url, ["new-1", "new-2", "new-3", "new-4"])
    config = store.config
    for stream in (
        config.stream_for("risk"),
        config.stream_for("dlq"),
        f"KV_{config.checkpoint_bucket}",
    ):
        await store.client.api(f"STREAM.DELETE.{stream}")
    assert riskpipe("init", env={"RISKPIPE_NATS_URL": nats_server.url}).returncode == 0
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 4}
    streams = await read_streams(store)
    answered = [a["evidence"]["id"] for found in streams.assessments.values() for a in found]
    assert sorted(answered) == ["new-1", "new-2", "new-3", "new-4"]


async def test_foreign_messages_after_the_last_assessment_do_not_hide_it(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The check looks past junk at the end of RISK to the latest assessment."""
    await _append(store, ["old-1", "old-2"])
    await run_worker(store, nats_server.url)
    for n in range(3):
        await store.append_unchecked("risk", "acme", "e9", b'{"junk": 1}', msg_id=f"junk:{n}")
    await verify_evidence_identity(store, "risk")  # intact: no error
    await _recreate_evidence(store)
    await _append(store, ["new-1", "new-2"])
    with pytest.raises(EvidenceReplacedError, match="sequence 2 holds test-src/new-2"):
        await verify_evidence_identity(store, "risk")
