"""What the ``$JS.ACK`` reply subject of a delivered message says about it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

__all__ = ["AckMetadata", "ack_metadata", "instant"]

_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
_NS_PER_MICROSECOND = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AckMetadata(NamedTuple):
    """Where a delivered message sits, when it was stored, and how often it was delivered."""

    stream: str
    num_delivered: int
    stream_seq: int
    consumer_seq: int
    stored_ns: int
    """When it was stored, in nanoseconds since the epoch."""
    num_pending: int

    @property
    def stored_at(self) -> datetime:
        """When it was stored (to the microsecond)."""
        return instant(self.stored_ns)


def instant(ns: int) -> datetime:
    """The UTC time ``ns`` nanoseconds after the epoch, to the microsecond.

    The same instant as ``datetime.fromtimestamp``, at a third of the cost.
    """
    return _EPOCH + timedelta(microseconds=ns // _NS_PER_MICROSECOND)


def ack_metadata(reply: str) -> AckMetadata:
    """The metadata in a v1 or v2 (domain, account hash) ``$JS.ACK`` subject."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == _V1_TOKENS else 4
    return AckMetadata(
        tokens[base],
        int(tokens[base + 2]),
        int(tokens[base + 3]),
        int(tokens[base + 4]),
        int(tokens[base + 5]),
        int(tokens[base + 6]),
    )
