"""What the ``$JS.ACK`` reply subject of a delivered message says about it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["AckMetadata", "ack_metadata"]

_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
_NS_PER_MICROSECOND = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AckMetadata(NamedTuple):
    """Where a delivered message sits, when it was stored, and how often it was delivered."""

    stream: str
    num_delivered: int
    stream_seq: int
    consumer_seq: int
    stored_at: datetime
    num_pending: int


def ack_metadata(reply: str) -> AckMetadata:
    """The metadata in a v1 or v2 (domain, account hash) ``$JS.ACK`` subject."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == _V1_TOKENS else 4
    return AckMetadata(
        tokens[base],
        int(tokens[base + 2]),
        int(tokens[base + 3]),
        int(tokens[base + 4]),
        # the same instant as datetime.fromtimestamp, at a third of the cost
        _EPOCH + timedelta(microseconds=int(tokens[base + 5]) // _NS_PER_MICROSECOND),
        int(tokens[base + 6]),
    )
