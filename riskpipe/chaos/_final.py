"""What the streams hold at the end of a chaos run, reduced to what the invariants check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import orjson

if TYPE_CHECKING:
    from pathlib import Path

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

    def dump(self, directory: Path) -> None:
        """Write it to ``directory`` as JSON lines, to be read back with :meth:`load`.

        ``evidence.jsonl`` and ``effects.jsonl`` hold a record per message,
        ``run.json`` the settings and the foreign messages: what the checker
        needs, so a run's kept history can be checked again without its servers.
        """
        directory.mkdir(parents=True, exist_ok=True)
        for name, records in (("evidence", self.evidence), ("effects", self.effects)):
            with (directory / f"{name}.jsonl").open("wb") as out:
                for record in records:
                    out.write(orjson.dumps(asdict(record)) + b"\n")
        settings = {
            "duplicate_window": self.duplicate_window,
            "max_deliver": self.max_deliver,
            "max_in_flight": self.max_in_flight,
            "workers": self.workers,
            "foreign": self.foreign,
        }
        (directory / "run.json").write_bytes(orjson.dumps(settings))

    @classmethod
    def load(cls, directory: Path) -> FinalState:
        """What :meth:`dump` wrote to ``directory``."""

        def lines(name: str) -> list[dict[str, object]]:
            with (directory / f"{name}.jsonl").open("rb") as src:
                return [orjson.loads(line) for line in src]

        run = orjson.loads((directory / "run.json").read_bytes())
        return cls(
            evidence=[StoredEvidence(**r) for r in lines("evidence")],  # type: ignore[arg-type]
            effects=[Effect(**r) for r in lines("effects")],  # type: ignore[arg-type]
            duplicate_window=run["duplicate_window"],
            max_deliver=run["max_deliver"],
            max_in_flight=run["max_in_flight"],
            workers=run["workers"],
            foreign=[(sequence, msg_id) for sequence, msg_id in run["foreign"]],
        )


def _sequence(effect: Effect) -> int:
    return effect.sequence
