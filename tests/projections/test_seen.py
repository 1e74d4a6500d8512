"""Which sequences a worker may take as handled or queued: what spares it a catch-up lookup."""

from __future__ import annotations

from projections._seen import SeenSequences


def _seen(*delivered: int | tuple[int, int], done: int = 0) -> SeenSequences:
    """Deliveries as stream sequences (consumer sequences counting up from 1), or pairs."""
    seen = SeenSequences()
    seen.handled_through(done)
    counter = 0
    for item in delivered:
        if isinstance(item, tuple):
            seq, counter = item
        else:
            seq, counter = item, counter + 1
        seen.add(seq, counter)
    return seen


def test_a_contiguous_run_of_deliveries_covers_its_range() -> None:
    """Deliveries without a gap cover their range, and nothing outside it."""
    seen = _seen(5, 6, 7, 8)
    assert seen.covers(5, 8)
    assert seen.covers(6, 7)
    assert not seen.covers(4, 8), "4 was never delivered here"
    assert not seen.covers(5, 9), "9 was never delivered here"


def test_stream_gaps_between_consecutive_deliveries_are_other_partitions() -> None:
    """Consecutive consumer sequences: the stream sequences skipped are not the consumer's.

    A filtered consumer skips what it does not deliver; with nothing delivered
    elsewhere in between, coverage holds across the skip.
    """
    seen = _seen(5, 9, 40, 41)
    assert seen.covers(5, 41)
    assert not seen.uncertain, "no bookkeeping for another partition's sequences"


def test_a_delivery_elsewhere_makes_the_skipped_sequences_uncertain() -> None:
    """A jump in the consumer sequence: the stream sequences skipped next may be elsewhere."""
    seen = _seen((5, 1), (6, 2), (9, 4), (10, 5))
    assert seen.uncertain == [(7, 8)]
    assert seen.covers(5, 6)
    assert not seen.covers(5, 9), "7 or 8 may be held by another worker"
    assert seen.covers(9, 10)


def test_a_jump_seen_on_a_redelivery_still_marks_the_next_skip() -> None:
    """A jump seen on a redelivery makes the next new message's skip uncertain.

    The next new message's own consumer sequence follows the redelivery's.
    """
    seen = _seen((5, 1), (6, 2), (5, 4), (12, 5))
    assert seen.uncertain == [(7, 11)]
    assert not seen.covers(6, 12)


def test_uncertain_ranges_stay_few_while_another_worker_shares_the_consumer() -> None:
    """Two workers taking turns on one consumer make one range, not one per skip."""
    seen = SeenSequences()
    for n in range(1, 20_001):  # this worker gets every other message
        seen.add(2 * n, 2 * n)
    assert not seen.fragmented
    assert seen.uncertain == [(3, 39_999)]
    assert not seen.covers(2, 4)
    assert seen.covers(40_000, 40_000)


def test_a_released_sequence_breaks_coverage_until_it_is_delivered_again() -> None:
    """A message handed back may go to another worker until it comes back here."""
    seen = _seen(5, 6, 7)
    seen.release(6)
    assert not seen.covers(5, 7), "a released message may go to another worker"
    seen.add(6, 4)
    assert seen.covers(5, 7)


def test_sequences_at_or_below_the_ack_floor_count_as_handled() -> None:
    """Below the ack floor at start everything counts as handled."""
    seen = _seen(11, 12, 13, done=10)
    assert seen.covers(3, 10), "all handled before this worker started"
    assert seen.covers(3, 13), "handled, then delivered here"
    assert not seen.covers(3, 14)
    assert _seen(done=10).covers(1, 10)
    assert not _seen(done=10).covers(1, 11), "nothing delivered yet"


def test_a_gap_just_above_the_ack_floor_is_not_covered() -> None:
    """Another worker may hold the message after the floor: it is not known to be handled."""
    seen = _seen(12, 13, done=10)
    assert not seen.covers(5, 13)
    assert seen.covers(12, 13)


def test_the_floor_only_rises() -> None:
    """A lower floor reported later does not undo a higher one."""
    seen = _seen(done=10)
    seen.handled_through(4)
    assert seen.covers(1, 10)


def test_a_start_with_nothing_outstanding_covers_from_the_consumers_position() -> None:
    """Seeded from consumer info: the next delivery in order needs no lookup below it."""
    seen = SeenSequences()
    seen.start_at(40, 12)
    seen.add(57, 13)
    assert seen.covers(30, 56), "handled up to 40, nothing of the filter in 41..56"
    assert not seen.uncertain


def test_a_fresh_consumer_seeded_at_zero_still_sees_a_delivery_elsewhere() -> None:
    """Two workers on a new consumer: consumer sequence 1 went elsewhere, so 1..6 is uncertain.

    (Consumer sequence 0 is a position like any other, not "nothing known".)
    """
    seen = SeenSequences()
    seen.start_at(0, 0)
    seen.add(7, 2)
    assert not seen.covers(1, 6), "sequence 1 may be held by the other worker"
    assert seen.covers(7, 7)


def test_a_redelivery_takes_a_new_consumer_sequence() -> None:
    """A message naked and redelivered here keeps the run contiguous, and is not released."""
    seen = SeenSequences()
    seen.start_at(0, 0)
    seen.add(1, 1)
    seen.add(2, 2)
    seen.release(1)
    seen.add(1, 3)  # the server numbers every delivery anew
    seen.add(5, 4)
    assert seen.covers(1, 5)


def test_a_redelivery_first_does_not_vouch_for_what_follows_it() -> None:
    """A worker taking over a partition gets a redelivery first: what it skips is not covered.

    Evidence 1757 and 1760 were held by the previous owner and handed back;
    1757 comes back first, then a new message 2007 with the next consumer
    sequence. 1760 still waits for its redelivery, so 1757..2007 must not
    count as delivered here (an entity of 1760 would skip its evidence).
    """
    seen = SeenSequences()
    seen.handled_through(1749)
    seen.add(1757, 50, redelivered=True)
    seen.add(2007, 51)
    assert not seen.covers(1758, 2006), "1760 waits for its redelivery"
    assert seen.first == 2007
    seen.add(2008, 52)
    assert seen.covers(2007, 2008)


def test_a_redelivery_past_the_tracked_end_leaves_what_it_skips_uncertain() -> None:
    """Redelivered past the last new message: its skip and the next new one's are uncertain."""
    seen = _seen((5, 1), (6, 2))
    seen.add(9, 5, redelivered=True)  # delivered elsewhere first (3, 4), handed back
    seen.add(11, 6)  # 10 went elsewhere as consumer sequence 4 and may still be held there
    assert not seen.covers(7, 8)
    assert not seen.covers(10, 10)
    assert seen.covers(11, 11)
