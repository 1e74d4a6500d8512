"""What the streams hold at the end of a chaos run, reduced to what the invariants check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Effect", "FinalState", "StoredEvidence"]


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """One message on the evidence stream."""

    sequence: int
    msg_id: str | None
    """Its ``Nats-Msg-Id`` (``None``: stored without one)."""
    entity: str
    """``<tenant>.<entity>``, from its subject (a poison message has one too)."""
    stored_at: float
    """The server's timestamp, seconds since the epoch."""
    partition: int | None = None
    """Its partition (``None``: the stream is not partitioned)."""


@dataclass(frozen=True, slots=True)
class Effect:
    """What a projection made of one evidence: an assessment or a dead letter."""

    kind: Literal["assessment", "dead-letter"]
    sequence: int
    """Its own sequence, in the risk stream or the dead-letter stream."""
    evidence: int
    """The evidence sequence it answers."""
    stored_at: float
    delivery_count: int = 0
    """A dead letter's deliveries before it was given up (0 for an assessment)."""


@dataclass(slots=True)
class FinalState:
    """The streams after the run, healed and quiet, and the settings that bound them."""

    evidence: list[StoredEvidence] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    duplicate_window: float = 120.0
    """The evidence stream's deduplication window, in seconds."""
    max_deliver: int = 5
    """Deliveries of one message before it is dead-lettered."""
    max_in_flight: int = 256
    """Messages a worker holds unacknowledged at most: what one fault may redeliver."""
    workers: int = 1
    foreign: list[tuple[int, str | None]] = field(default_factory=list)
    """Messages on the risk stream that are no projection's assessment: (sequence, msg id).

    Only workers may write there; anything else got past the permissions."""

    def assessments(self) -> list[Effect]:
        """The assessments, in risk stream order."""
        return sorted((e for e in self.effects if e.kind == "assessment"), key=_sequence)

    def dead_letters(self) -> list[Effect]:
        """The dead letters, in dead-letter stream order."""
        return sorted((e for e in self.effects if e.kind == "dead-letter"), key=_sequence)


def _sequence(effect: Effect) -> int:
    return effect.sequence
