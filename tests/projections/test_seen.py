"""Which sequences a worker may take as handled or queued: what spares it a catch-up lookup."""

from __future__ import annotations

from projections._seen import SeenSequences


def _seen(*delivered: int, done: int = 0) -> SeenSequences:
    seen = SeenSequences()
    seen.handled_through(done)
    for seq in delivered:
        seen.add(seq)
    return seen


def test_a_contiguous_run_of_deliveries_covers_its_range() -> None:
    """Deliveries without a gap cover their range, and nothing outside it."""
    seen = _seen(5, 6, 7, 8)
    assert seen.covers(5, 8)
    assert seen.covers(6, 7)
    assert not seen.covers(4, 8), "4 was never delivered here"
    assert not seen.covers(5, 9), "9 was never delivered here"


def test_a_hole_breaks_coverage_until_it_is_delivered() -> None:
    """A missing sequence breaks coverage; so does one released for redelivery."""
    seen = _seen(5, 7)
    assert not seen.covers(5, 7)
    seen.add(6)
    assert seen.covers(5, 7)
    seen.release(6)
    assert not seen.covers(5, 7), "a released message may go to another worker"


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
