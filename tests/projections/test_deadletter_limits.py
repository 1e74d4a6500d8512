"""Dead letters of large or half-readable originals: they fit, keep their reference, and replay."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import pytest
from support.events import evidence
from support.pipeline import run_worker

from eventstore import Delivery, EventStore, encode_event
from eventstore.errors import SchemaViolationError
from projections import DeadLetterData, DeadLetterQueue, Message, OriginalUnavailableError
from projections._deadletter import dead_letter
from riskpipe.topology import topology_config

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _message(data: bytes, headers: dict[str, str] | None = None) -> Message:
    delivery = Delivery(
        subject="rp.evidence.t1.e1", data=data, headers=headers or {}, stream="EVIDENCE",
        stream_seq=7, consumer_seq=7, num_delivered=1, num_pending=0, stored_at=NOW, reply="",
    )  # fmt: skip
    return Message("risk", delivery, "t1", "e1", 5)


def _evidence_json(**fields: object) -> bytes:
    doc = {
        "id": "ev-1", "source": "svc:auth", "type": "riskpipe.evidence.recorded.v1",
        "subject": "e1", "tenant": "t1", "time": "2026-01-01T00:00:00Z",
        "data": {"pattern": "p", "severity": "high"},
    }  # fmt: skip
    return orjson.dumps({**doc, **fields})


@pytest.mark.parametrize("limit", [1500, 4000, 20_000])
def test_a_dead_letter_fits_its_limit_and_keeps_the_reference(limit: int) -> None:
    """Too large a copy is cut to fit; stream, sequence, hash, size and error stay whole."""
    original = _evidence_json(note="x" * 30_000)
    out = dead_letter(
        _message(original, {"Trace": "t" * 500}),
        SchemaViolationError("riskpipe.evidence.recorded.v1", ["data.note: not allowed"]),
        permanent=True, now=NOW, config=topology_config(), max_bytes=limit,
    )  # fmt: skip
    data = out.data
    assert isinstance(data, DeadLetterData)
    assert len(encode_event(out.event, data)) <= limit
    assert data.original_truncated
    assert (data.stream, data.sequence, data.original_size) == ("EVIDENCE", 7, len(original))
    assert data.payload_sha256 == hashlib.sha256(original).hexdigest()
    assert original.startswith(data.original_bytes())
    assert limit - len(encode_event(out.event, data)) < 4 + 600, "as much kept as fits"
    assert data.error_type == "SchemaViolationError"


def test_a_dead_letter_that_fits_is_whole() -> None:
    """Under the limit, the original is copied in full and not marked truncated."""
    original = _evidence_json()
    data = dead_letter(
        _message(original), ValueError("bad"), permanent=True, now=NOW, config=topology_config(),
        max_bytes=64_000,
    ).data  # fmt: skip
    assert isinstance(data, DeadLetterData)
    assert (data.original_truncated, data.original_bytes()) == (False, original)


def test_schema_breaking_json_keeps_every_readable_envelope_field() -> None:
    """JSON that parsed but broke the schema keeps id, source, type, subject, tenant, time, ..."""
    original = _evidence_json(
        subject="not a token!", time="yesterday", correlationid="c" * 1000, tenant=["x"]
    )
    data = dead_letter(
        _message(original), SchemaViolationError("envelope", ["subject: bad"]),
        permanent=True, now=NOW, config=topology_config(),
    ).data  # fmt: skip
    assert isinstance(data, DeadLetterData)
    assert data.envelope == {
        "id": "ev-1",
        "source": "svc:auth",
        "type": "riskpipe.evidence.recorded.v1",
        "subject": "not a token!",
        "time": "yesterday",
        "correlationid": "c" * 256,
    }
    assert (data.evidence_id, data.evidence_source) == ("ev-1", "svc:auth"), "still named"


def test_an_id_that_is_not_a_valid_id_is_kept_only_as_text() -> None:
    """An unusable id (whitespace, too long) is not taken as the evidence id, only kept as text."""
    original = _evidence_json(id="two words", source="s" * 300, subject="bad subject")
    data = dead_letter(
        _message(original), SchemaViolationError("envelope", ["id: bad"]),
        permanent=True, now=NOW, config=topology_config(),
    ).data  # fmt: skip
    assert isinstance(data, DeadLetterData)
    assert (data.evidence_id, data.evidence_source) == (None, None)
    assert data.envelope["id"] == "two words"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"just a string"'])
def test_unreadable_originals_have_an_empty_envelope(raw: bytes) -> None:
    """Bytes that are not a JSON object give no envelope fields, and no error."""
    data = dead_letter(
        _message(raw), ValueError("bad"), permanent=True, now=NOW, config=topology_config()
    ).data
    assert isinstance(data, DeadLetterData)
    assert data.envelope == {}


async def test_a_large_poison_event_is_dead_lettered_and_replayed_whole(
    nats_server: NatsServer,
    large_store: EventStore,
) -> None:
    """A 790 KB poison event under an 800,000-byte limit: dead-lettered in part, replayed whole."""
    store = large_store
    original = _evidence_json(note="x" * 790_000)
    poison = await store.append_unchecked(
        "evidence", "t1", "e1", original, msg_id="big", headers={"Producer": "p1"}
    )
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"dead_lettered": 1}
    assert store.client.connected
    dlq = DeadLetterQueue(store, "risk")
    (letter,) = await dlq.list()
    assert letter.data.original_truncated
    assert letter.data.sequence == poison.sequence
    assert letter.data.payload_sha256 == hashlib.sha256(original).hexdigest()
    assert letter.data.envelope["id"] == "ev-1"
    assert (await dlq.original(letter))[0] == original
    replayed_at = await dlq.replay(letter.sequence, actor="test")
    replayed = await store.get("EVIDENCE", replayed_at)
    assert replayed is not None
    assert replayed.payload == original
    assert replayed.headers["Producer"] == "p1"
    gone = letter.data.model_copy(update={"sequence": 999})
    with pytest.raises(OriginalUnavailableError, match="no longer exists"):
        await dlq.original(replace(letter, data=gone))
    changed = letter.data.model_copy(update={"payload_sha256": "0" * 64})
    with pytest.raises(OriginalUnavailableError, match="does not match"):
        await dlq.original(replace(letter, data=changed))
    whole = letter.data.model_copy(
        update={"original_truncated": False, "original": base64.b64encode(b"{}").decode()}
    )
    assert (await dlq.original(replace(letter, data=whole)))[0] == b"{}"


async def test_a_header_that_swells_in_json_still_gives_a_dead_letter_that_fits(
    nats_server: NatsServer, store: EventStore
) -> None:
    """62,000 backslashes in a header double when the dead letter escapes them: it still fits."""
    payload = b'{"broken' + b"y" * 5000
    await store.client.nc.publish("rp.evidence.acme.e01", payload, headers={"X-Big": "\\" * 62_000})
    await store.client.nc.flush()
    await store.append(evidence("after", tenant="acme", entity="e01", minute=1))
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"dead_lettered": 1, "assessed": 1}
    (letter,) = await DeadLetterQueue(store, "risk").list()
    assert letter.data.original_truncated
    assert letter.data.payload_sha256 == hashlib.sha256(payload).hexdigest()
