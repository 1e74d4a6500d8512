"""Whether the evidence stream still holds the evidence the assessments answer.

An assessment points at its evidence by stream sequence, and the projection
takes any evidence at or below an entity's cursor for handled. A deleted and
re-created evidence stream starts its sequences over, so without this check
its new evidence would be skipped as old (and its assessments, whose ids
follow the sequence, dropped as duplicates). One look at the latest
assessment and at the evidence it names tells the two streams apart; the
worker makes it at start and with its consumer checks, ``status`` with its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore.errors import DecodeError
from projections.errors import EvidenceReplacedError
from projections.risk._events import RiskAssessedData

if TYPE_CHECKING:
    from eventstore import EventStore, RecordedEvent

__all__ = ["LOOK_BACK", "verify_evidence_identity"]

LOOK_BACK = 64
"""How many messages at the end of RISK are read for the latest assessment (past foreign ones)."""


async def verify_evidence_identity(store: EventStore, projection: str) -> None:
    """Check that the latest assessment's evidence is in the evidence stream, where it says.

    Nothing to check before the first assessment, or when the last
    :data:`LOOK_BACK` messages on RISK are all foreign.

    Raises:
        EvidenceReplacedError: the evidence stream holds other evidence there, or none.
    """
    latest = await _latest_assessment(store, projection)
    if latest is None:
        return
    ref = latest.evidence
    stream = store.config.stream_for("evidence")
    if ref.stream != stream:
        return  # written for another stream name: not this stream's positions
    expected = f"{ref.source}/{ref.id}"
    found = await store.get(stream, ref.sequence)
    if found is None and ref.sequence <= int((await store.stream_state(stream))["last_seq"]):
        return  # a replica behind its leader answered the direct get: not a verdict
    held = _identity(found)
    if held != expected:
        raise EvidenceReplacedError(stream, ref.sequence, expected, held)


async def _latest_assessment(store: EventStore, projection: str) -> RiskAssessedData | None:
    stream = store.config.stream_for("risk")
    state = await store.stream_state(stream)
    last, first = int(state["last_seq"]), max(int(state["first_seq"]), 1)
    # Partitions commit side by side, so the last assessment written need not
    # answer the latest evidence: of the last few, the one answering the
    # highest evidence sequence is checked.
    latest: RiskAssessedData | None = None
    for sequence in range(last, max(first, last - LOOK_BACK + 1) - 1, -1):  # none when empty
        recorded = await store.get(stream, sequence)
        if recorded is None or recorded.event is None:
            continue  # a gap, or a foreign message (skipped, as the projection does)
        try:
            data = store.schemas.typed_data(recorded.event)
        except DecodeError:
            continue
        if not isinstance(data, RiskAssessedData) or data.projection != projection:
            continue
        if latest is None or data.evidence.sequence > latest.evidence.sequence:
            latest = data
    return latest


def _identity(recorded: RecordedEvent | None) -> str:
    """``source/id`` of the evidence ``recorded`` holds, or what it holds instead."""
    if recorded is None:
        return "nothing"
    if recorded.event is None:
        return "a message that is not an event"
    return f"{recorded.event.source}/{recorded.event.id}"
