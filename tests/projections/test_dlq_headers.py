"""A dead letter keeps its original's header block byte for byte, and a replay re-sends it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
import pytest
from support.nats import raw_publish
from support.pipeline import run_worker

from eventstore import Delivery, EventStore, RawMessage, encode_event
from projections import DeadLetterData, DeadLetterQueue, Message
from projections._deadletter import dead_letter
from riskpipe.topology import topology_config

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

# duplicates, a name in two cases, spacing kept inside a value, an order that is not sorted;
# and a message id and a replay mark of the producer's own, which a replay must not re-send
ORIGINAL = (
    b"NATS/1.0\r\nX-Trace: a\r\nx-trace:b\r\nX-Trace:   spaced  out  \r\nZ-Order: 1\r\n"
    b"Nats-Msg-Id: producer-1\r\nriskpipe-replay-of: 99\r\nA-Order: 2\r\n"
)
RESENT_LINES = (
    b"X-Trace: a\r\nx-trace:b\r\nX-Trace:   spaced  out  \r\nZ-Order: 1\r\nA-Order: 2\r\n"
)


async def _evidence_as_stored(store: EventStore, sequence: int) -> RawMessage:
    """The evidence at ``sequence`` as a consumer receives it: its header block as stored."""
    async for batch in store.read_batches(from_seq=sequence, until_seq=sequence):
        (raw,) = batch
        return raw
    raise AssertionError(f"no evidence at {sequence}")


async def _replayed_block(store: EventStore, url: str) -> tuple[DeadLetterData, bytes | None]:
    """The poison message's dead letter, and the header block its replay stored."""
    await run_worker(store, url)
    queue = DeadLetterQueue(store, "risk")
    (letter,) = await queue.list()
    new_seq = await queue.replay(letter.sequence, actor="alice")
    return letter.data, (await _evidence_as_stored(store, new_seq)).header_block


def _expected(dlq_sequence: int) -> bytes:
    return (
        b"NATS/1.0\r\n" + RESENT_LINES + f"Riskpipe-Replay-Of: {dlq_sequence}\r\n".encode()
        + b"Nats-Msg-Id: riskpipe-dlq-replay:risk:1\r\n\r\n"
    )  # fmt: skip


async def test_a_replay_resends_the_original_header_lines_byte_for_byte(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Duplicates, case, spacing and order survive dead-lettering and replay; Nats-* does not."""
    await raw_publish(nats_server.url, "rp.evidence.t1.e1", ORIGINAL, b"{broken")
    data, block = await _replayed_block(store, nats_server.url)
    assert block == _expected(data.sequence)
    assert data.header_block() == ORIGINAL + b"\r\n"


async def test_a_truncated_dead_letter_replays_the_header_block_as_stored(
    nats_server: NatsServer,
    large_store: EventStore,
) -> None:
    """An original too large to copy is re-sent from its stream, its header lines still exact."""
    store = large_store
    payload = orjson.dumps({"id": "big", "note": "x" * 790_000})
    await raw_publish(nats_server.url, "rp.evidence.t1.e1", ORIGINAL, payload)
    data, block = await _replayed_block(store, nats_server.url)
    assert data.original_truncated
    assert block == _expected(data.sequence)


@pytest.mark.parametrize("limit", [2_000, 6_000, 40_000])
def test_a_dead_letter_with_a_large_header_block_still_fits(limit: int) -> None:
    """The exact block is bounded with the headers: dropped with them when they do not fit."""
    block = b"NATS/1.0\r\n" + b"".join(b"X-Big: %s\r\n" % (b"v" * 900) for _ in range(20)) + b"\r\n"
    delivery = Delivery(
        subject="rp.evidence.t1.e1", data=b"{broken", headers={"X-Big": "v" * 900},
        stream="EVIDENCE", stream_seq=7, consumer_seq=7, num_delivered=1, num_pending=0,
        stored_at=datetime(2026, 1, 1, tzinfo=UTC), reply="", header_block=block,
    )  # fmt: skip
    out = dead_letter(
        Message("risk", delivery, "t1", "e1", 5), ValueError("bad"), permanent=True,
        now=datetime(2026, 1, 1, tzinfo=UTC), config=topology_config(), max_bytes=limit,
    )  # fmt: skip
    data = out.data
    assert isinstance(data, DeadLetterData)
    assert len(encode_event(out.event, data)) <= limit
    kept = data.original_header_block
    assert kept is None or base64.b64decode(kept) == block
    assert (kept is None) == (limit < len(block) * 2)
