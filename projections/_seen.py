"""Which stream sequences this worker has been delivered, to know when an entity has no gap."""

from __future__ import annotations

import bisect

__all__ = ["SeenSequences"]

_MAX_UNCERTAIN = 10_000


class SeenSequences:
    """Tracks what the consumer delivered to this process since it started.

    A consumer delivers new messages of its filter in stream order, and
    numbers every delivery it makes (to any process) with a consumer
    sequence. So when two deliveries to this process carry consecutive
    consumer sequences, nothing was delivered elsewhere between them: the
    stream sequences they skip are not in the consumer's filter (another
    partition's evidence) and need no tracking. Only a jump in the consumer
    sequence (a delivery to another process, or one this process never saw)
    makes the stream sequences skipped next *uncertain*: one of them may be
    held elsewhere. ``covers(first, last)`` is true when no sequence of the
    filter in that range can be anywhere but handled already (at or below
    the ack floor at start) or delivered here, so an entity's earlier
    evidence is already handled or waiting in its mailbox. Uncertain ranges
    are kept as a few intervals, not as one hole per sequence; past a bound
    the tracker gives up and ``covers`` is false.
    """

    def __init__(self) -> None:
        self.first = 0
        self.last = 0
        self.last_delivery = 0
        """The highest consumer sequence delivered here."""
        self.uncertain: list[tuple[int, int]] = []
        """Sorted, disjoint ranges of stream sequences that may be held elsewhere."""
        self.released: set[int] = set()
        """Sequences handed back (nak) that may be redelivered elsewhere."""
        self.fragmented = False
        self._jumped = False  # a delivery went elsewhere since the last new message
        self.done = 0
        """Every sequence up to this one is handled already (acknowledged: its effect stored)."""

    def start_at(self, seq: int, delivery: int) -> None:
        """Start from a consumer with nothing outstanding: its last delivery was ``delivery``.

        Every message of the filter up to stream sequence ``seq`` is handled,
        and the next delivery with consumer sequence ``delivery + 1`` is the
        next message of the filter: nothing it skips needs a lookup.
        """
        self.done = max(self.done, seq)
        if self.first == 0:
            self.first, self.last = seq + 1, seq
            self.last_delivery = delivery

    def handled_through(self, seq: int) -> None:
        """Record that every sequence up to ``seq`` is handled (the consumer's ack floor)."""
        self.done = max(self.done, seq)

    def add(self, seq: int, delivery: int, *, redelivered: bool = False) -> None:
        """Record the delivery of stream sequence ``seq`` as consumer sequence ``delivery``.

        Only a message's first delivery says where the consumer's new
        messages have got to. A redelivery (``redelivered``) may come from far
        behind, with messages after it still held elsewhere or waiting for
        their own redelivery: it never starts the tracked range, and one past
        its end extends it only with what it skips marked uncertain, as is
        what the next new message skips.
        """
        if self.first and delivery != self.last_delivery + 1:
            self._jumped = True  # tracking, and a delivery went elsewhere since the last
        self.last_delivery = max(self.last_delivery, delivery)
        if redelivered and (self.first == 0 or seq > self.last):
            if self.first:
                if seq > self.last + 1:
                    self._mark_uncertain(self.last + 1, seq - 1)
                self.last = seq
                self._jumped = True
            return
        if self.first == 0:
            self.first = self.last = seq
            self._jumped = False
        elif seq > self.last:
            if self._jumped and seq > self.last + 1:
                self._mark_uncertain(self.last + 1, seq - 1)
            self._jumped = False
            self.last = seq
        else:
            self.released.discard(seq)

    def release(self, seq: int) -> None:
        """Record that ``seq`` was handed back (nak): it may be redelivered elsewhere."""
        if len(self.released) < _MAX_UNCERTAIN:
            self.released.add(seq)
        else:
            self.fragmented = True

    def covers(self, first: int, last: int) -> bool:
        """Whether every sequence in ``first..last`` was handled already or delivered here."""
        if last <= self.done:
            return True
        first = max(first, self.done + 1)
        if self.fragmented or self.first == 0 or first < self.first or last > self.last:
            return False
        if any(first <= seq <= last for seq in self.released):
            return False
        at = bisect.bisect_left(self.uncertain, (first, first))
        if at and self.uncertain[at - 1][1] >= first:
            return False
        return at == len(self.uncertain) or self.uncertain[at][0] > last

    def _mark_uncertain(self, first: int, last: int) -> None:
        # Merged with the previous range across at most one message delivered
        # here (it then counts as uncertain too: a lookup more, never a miss),
        # so two workers taking turns on one consumer make one range, not one each.
        if self.uncertain and self.uncertain[-1][1] >= first - 2:
            self.uncertain[-1] = (self.uncertain[-1][0], last)
        elif len(self.uncertain) < _MAX_UNCERTAIN:
            self.uncertain.append((first, last))
        else:
            self.fragmented = True
