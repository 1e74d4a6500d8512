"""Foreign messages on DLQ and AUDIT subjects: the readers skip them, each with a finding.

On the unauthenticated server anyone can publish there, and nats-server
itself stores its trace event on any subject a message names as its
``Nats-Trace-Dest``. ``riskpipe dlq list`` and ``show``, and the claim a
replay reads on a dead letter's audit trail, must not crash on them nor
take them for what they are not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import pytest
from support.cli import riskpipe
from support.nats import trace_to
from support.pipeline import run_worker, wait_for_messages

from eventstore import CloudEvent
from projections import DEAD_LETTERED, DLQ_REPLAY_STARTED, DLQ_REPLAYED, DeadLetterQueue
from riskpipe.status import pipeline_status

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

DLQ_SUBJECT = "rp.dlq.risk.acme.victim"
AUDIT_SUBJECT = "rp.audit.acme.victim"


def _forged(event_type: str, data: dict[str, object]) -> bytes:
    """A valid envelope of ``event_type`` whose data is not what that type holds."""
    event = CloudEvent(
        id="forged", source="mallory", type=event_type, subject="victim", tenant="acme",
        time=datetime(2026, 1, 1, tzinfo=UTC), data=data,  # type: ignore[arg-type]
    )  # fmt: skip
    return orjson.dumps(event.to_json_dict())


async def _publish(store: EventStore, subject: str, payload: bytes) -> None:
    await store.client.nc.publish(subject, payload)


async def _one_dead_letter(store: EventStore, url: str) -> int:
    """Dead-letter one undecodable evidence of acme/victim; its DLQ sequence."""
    await store.append_unchecked("evidence", "acme", "victim", b"{not json", msg_id="poison")
    await run_worker(store, url)
    (letter,) = await DeadLetterQueue(store, "risk").list()
    return letter.sequence


def _env(url: str) -> dict[str, str]:
    return {"RISKPIPE_NATS_URL": url}


def _findings(stderr: str) -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "dlq.foreign_message"]


async def test_dlq_list_and_show_skip_foreign_messages_with_a_finding(
    nats_server: NatsServer, store: EventStore
) -> None:
    """A trace event and a forged dead letter on a DLQ subject: listed as findings, not letters."""
    letter = await _one_dead_letter(store, nats_server.url)
    trace_seq, forged_seq = letter + 1, letter + 2
    await trace_to(nats_server.url, DLQ_SUBJECT)
    await wait_for_messages(store, "DLQ", trace_seq)
    await _publish(store, DLQ_SUBJECT, _forged(DEAD_LETTERED, {"sequence": "x"}))
    await wait_for_messages(store, "DLQ", forged_seq)

    listed = riskpipe("dlq", "list", "--json", env=_env(nats_server.url))
    assert listed.returncode == 0, listed.stderr
    assert [orjson.loads(line)["dlq_sequence"] for line in listed.stdout.splitlines()] == [letter]
    found = _findings(listed.stderr)
    assert [(f["stream"], f["sequence"]) for f in found] == [
        ("DLQ", trace_seq),
        ("DLQ", forged_seq),
    ]

    for seq in (trace_seq, forged_seq):
        shown = riskpipe("dlq", "show", str(seq), env=_env(nats_server.url))
        assert shown.returncode == 1
        assert f"DLQ sequence {seq} is not a dead letter" in shown.stderr
    shown = riskpipe("dlq", "show", str(letter), env=_env(nats_server.url))
    assert shown.returncode == 0, shown.stderr


@pytest.mark.parametrize(
    "junk",
    [
        _forged(DLQ_REPLAYED, {"projection": "risk"}),
        _forged(DLQ_REPLAYED, {"projection": "risk", "dead_letter_sequence": "one"}),
    ],
)
async def test_forged_action_records_on_audit_do_not_break_listing_or_status(
    nats_server: NatsServer, store: EventStore, junk: bytes
) -> None:
    """An audit record that names the projection but is not an action is a finding."""
    letter = await _one_dead_letter(store, nats_server.url)
    await trace_to(nats_server.url, AUDIT_SUBJECT)
    await wait_for_messages(store, "AUDIT", 1)
    await _publish(store, AUDIT_SUBJECT, junk)
    await wait_for_messages(store, "AUDIT", 2)
    queue = DeadLetterQueue(store, "risk")
    (listed,) = await queue.list()
    assert (listed.sequence, listed.status) == (letter, "pending")
    assert [f.sequence for f in queue.foreign] == [1, 2]
    status = await pipeline_status(store, "risk")
    assert (status.dlq_depth, status.dlq_replayed) == (1, 0)


@pytest.mark.parametrize(
    "junk",
    [
        b"not json",
        _forged(DLQ_REPLAYED, {"projection": "risk", "actor": "mallory"}),
        _forged(DLQ_REPLAY_STARTED, {"projection": "risk", "evidence_floor": "high"}),
    ],
)
async def test_a_replay_claim_reader_skips_foreign_messages_on_the_trail(
    nats_server: NatsServer, store: EventStore, junk: bytes
) -> None:
    """Junk and a trace on a dead letter's replay trail: the replay still claims and re-sends."""
    letter = await _one_dead_letter(store, nats_server.url)
    trail = f"{AUDIT_SUBJECT}.replay.risk.{letter}"
    await trace_to(nats_server.url, trail)
    await wait_for_messages(store, "AUDIT", 1)
    await _publish(store, trail, junk)
    await wait_for_messages(store, "AUDIT", 2)
    replayed = riskpipe("dlq", "replay", str(letter), env=_env(nats_server.url))
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed dead letter {letter} as evidence sequence 2" in replayed.stdout
    assert [(f["stream"], f["sequence"]) for f in _findings(replayed.stderr)] == [
        ("AUDIT", 1),
        ("AUDIT", 2),
    ]
    again = riskpipe("dlq", "replay", str(letter), env=_env(nats_server.url))
    assert again.returncode == 1
    assert "was replayed already, as evidence sequence 2" in again.stderr


async def test_a_trace_after_a_replay_does_not_let_the_letter_be_replayed_again(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The trail's record stays the answer when junk lands after it: refused, not re-sent."""
    letter = await _one_dead_letter(store, nats_server.url)
    queue = DeadLetterQueue(store, "risk")
    assert await queue.replay(letter, actor="ops") == 2
    trail = f"{AUDIT_SUBJECT}.replay.risk.{letter}"
    await trace_to(nats_server.url, trail)
    await wait_for_messages(store, "AUDIT", 3)
    again = riskpipe("dlq", "replay", str(letter), env=_env(nats_server.url))
    assert again.returncode == 1, again.stdout
    assert "was replayed already, as evidence sequence 2" in again.stderr
    assert [(f["stream"], f["sequence"]) for f in _findings(again.stderr)] == [("AUDIT", 3)]
    assert int((await store.stream_state(store.config.stream_for("audit")))["messages"]) == 3
