"""Which stream sequences this worker has been delivered, to know when an entity has no gap."""

from __future__ import annotations

__all__ = ["SeenSequences"]

_MAX_HOLES = 10_000


class SeenSequences:
    """Tracks the stream sequences delivered to this process since it started.

    For a consumer over the whole stream, deliveries of new messages come in
    stream order. ``covers(first, last)`` is true when every sequence in that
    range was handled before this process started (at or below the consumer's
    ack floor then) or delivered here, so any message of an entity in it is
    already handled or waiting in its mailbox. Holes appear when another worker shares
    the consumer; past a bound the tracker gives up and ``covers`` is false.
    """

    def __init__(self) -> None:
        self.first = 0
        self.last = 0
        self.holes: set[int] = set()
        self.fragmented = False
        self.done = 0
        """Every sequence up to this one is handled already (acknowledged: its effect stored)."""

    def handled_through(self, seq: int) -> None:
        """Record that every sequence up to ``seq`` is handled (the consumer's ack floor)."""
        self.done = max(self.done, seq)

    def add(self, seq: int) -> None:
        """Record a delivery of ``seq``."""
        if self.first == 0:
            self.first = self.last = seq
        elif seq > self.last:
            if seq > self.last + 1 and not self.fragmented:
                self.holes.update(range(self.last + 1, seq))
                self.fragmented = len(self.holes) > _MAX_HOLES
            self.last = seq
        else:
            self.holes.discard(seq)

    def release(self, seq: int) -> None:
        """Record that ``seq`` was handed back (nak): it may be redelivered elsewhere."""
        if not self.fragmented:
            self.holes.add(seq)

    def covers(self, first: int, last: int) -> bool:
        """Whether every sequence in ``first..last`` was handled already or delivered here."""
        if last <= self.done:
            return True
        first = max(first, self.done + 1)
        if self.fragmented or self.first == 0 or first < self.first or last > self.last:
            return False
        return not self.holes or not any(first <= hole <= last for hole in self.holes)
