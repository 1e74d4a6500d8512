"""Reading a delivered message's metadata from its ``$JS.ACK`` reply subject."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventstore._jetstream._acks import ack_metadata

# 2026-11-29T08:00:00.123456789Z in nanoseconds
_TS = 1_795_939_200_123_456_789


@pytest.mark.parametrize(
    "reply",
    [
        f"$JS.ACK.EVIDENCE.risk.2.41.7.{_TS}.13",
        f"$JS.ACK.hub.acc-hash.EVIDENCE.risk.2.41.7.{_TS}.13.rand",
    ],
    ids=["v1", "v2-with-domain"],
)
def test_both_subject_layouts_give_the_same_metadata(reply: str) -> None:
    """Stream, delivery count, sequences, pending, and the stored time to the microsecond."""
    meta = ack_metadata(reply)
    assert (meta.stream, meta.num_delivered, meta.stream_seq, meta.consumer_seq) == (
        "EVIDENCE",
        2,
        41,
        7,
    )
    assert meta.num_pending == 13
    assert meta.stored_at == datetime(2026, 11, 29, 8, 0, 0, 123456, tzinfo=UTC)
