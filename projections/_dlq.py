"""Operating the dead-letter queue: list, show, replay into the projection, purge.

Every replay and purge is recorded as an event on the audit stream, so the
trail shows who did what to which dead letter, and when.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore import CloudEvent
from projections._deadletter import DEAD_LETTERED, DeadLetterData, projection_source
from projections._runner import split_subject
from projections.errors import ProjectionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import EventStore, RecordedEvent

__all__ = [
    "DLQ_PURGED",
    "DLQ_REPLAYED",
    "REPLAY_HEADER",
    "DeadLetter",
    "DeadLetterQueue",
    "DlqActionData",
    "DlqActions",
    "NotADeadLetterError",
    "OriginalUnavailableError",
]

REPLAY_HEADER = "Riskpipe-Replay-Of"
"""Set on evidence re-sent from the dead-letter queue: the original's stream sequence."""
DLQ_REPLAYED = "riskpipe.dlq.replayed.v1"
DLQ_PURGED = "riskpipe.dlq.purged.v1"


class DlqActionData(BaseModel):
    """The ``data`` of an operator's action on a dead letter (replay or purge)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    projection: str
    dead_letter_sequence: int = Field(ge=1)
    stream: str
    sequence: int = Field(ge=1)
    evidence_id: str | None = None
    actor: str = Field(min_length=1, max_length=256)
    reason: str = Field(default="", max_length=1000)
    replayed_as: int | None = None
    """For a replay: the stream sequence of the re-sent evidence."""


class NotADeadLetterError(ProjectionError, LookupError):
    """There is no dead letter of this projection at that sequence."""


class OriginalUnavailableError(ProjectionError, LookupError):
    """A dead letter's copy of its original is cut short, and the stored original is not there."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as stored, with what operators did to it since."""

    sequence: int
    tenant: str
    entity: str
    data: DeadLetterData
    status: Literal["pending", "replayed"]
    replayed_as: int | None = None


@dataclass(frozen=True, slots=True)
class DlqActions:
    """What the audit stream says happened to a projection's dead letters."""

    replayed: dict[int, int]
    """dead letter sequence -> sequence of the re-sent evidence"""
    purged: set[int]


class DeadLetterQueue:
    """One projection's dead letters."""

    def __init__(
        self,
        store: EventStore,
        projection: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.projection = projection
        self._clock = clock
        self.subject_filter = f"{store.config.prefix}.dlq.{projection}.>"

    async def actions(self) -> DlqActions:
        """Replays and purges recorded on the audit stream for this projection."""
        replayed: dict[int, int] = {}
        purged: set[int] = set()
        async for rec in self.store.read_all(stream=self.store.config.audit_stream):
            data = (rec.event.data or {}) if rec.event is not None else {}
            if data.get("projection") != self.projection or rec.event is None:
                continue
            seq = int(str(data["dead_letter_sequence"]))
            if rec.event.type == DLQ_REPLAYED:
                replayed[seq] = int(str(data.get("replayed_as") or 0))
            elif rec.event.type == DLQ_PURGED:
                purged.add(seq)
        return DlqActions(replayed, purged)

    async def depth(self) -> int:
        """How many dead letters of this projection are queued."""
        return await self.store.count(self.store.config.dlq_stream, self.subject_filter)

    async def oldest_age(self) -> float | None:
        """Age in seconds of the oldest queued dead letter, or ``None`` when there is none."""
        first = await self.store.get(
            self.store.config.dlq_stream, 1, next_on_subject=self.subject_filter
        )
        return (
            None if first is None else max(0.0, (self._clock() - first.stored_at).total_seconds())
        )

    async def list(self) -> list[DeadLetter]:
        """Every dead letter still in the queue, oldest first."""
        actions = await self.actions()
        return [
            self._dead_letter(rec, actions)
            async for rec in self.store.read_all(
                stream=self.store.config.dlq_stream, filter_subject=self.subject_filter
            )
            if rec.event is not None and rec.event.type == DEAD_LETTERED
        ]

    async def get(self, sequence: int) -> DeadLetter:
        """The dead letter at ``sequence`` of the DLQ stream.

        Raises:
            NotADeadLetterError: nothing of this projection's is stored there.
        """
        rec = await self.store.get(self.store.config.dlq_stream, sequence)
        if rec is None or rec.event is None or rec.event.type != DEAD_LETTERED:
            raise NotADeadLetterError(f"no dead letter at DLQ sequence {sequence}")
        if not rec.subject.startswith(self.subject_filter[:-1]):
            raise NotADeadLetterError(f"DLQ sequence {sequence} belongs to another projection")
        return self._dead_letter(rec, await self.actions())

    def _dead_letter(self, rec: RecordedEvent, actions: DlqActions) -> DeadLetter:
        assert rec.event is not None  # noqa: S101 - callers filter undecodable records
        data = DeadLetterData.model_validate(rec.event.data)
        replayed_as = actions.replayed.get(rec.sequence)
        return DeadLetter(
            sequence=rec.sequence,
            tenant=rec.event.tenant,
            entity=rec.event.subject,
            data=data,
            status="replayed" if replayed_as else "pending",
            replayed_as=replayed_as,
        )

    async def replay(self, sequence: int, *, actor: str, reason: str = "") -> int:
        """Send the original message back through the projection; return its new sequence.

        The original bytes and headers go back on the original subject with a
        ``Riskpipe-Replay-Of`` header. Replaying the same dead letter twice sends
        it once (its ``Nats-Msg-Id`` is derived from the dead letter).

        A dead letter whose copy of the original was cut short
        (``original_truncated``) replays the original as stored at its stream
        and sequence, once its SHA-256 matches the dead letter's.

        Raises:
            NotADeadLetterError: no such dead letter.
            OriginalUnavailableError: the copy is truncated and the stored
                original is gone or differs; nothing was sent.
        """
        letter = await self.get(sequence)
        tenant, entity = split_subject(letter.data.subject)
        original, original_headers = await self.original(letter)
        headers = {k: v for k, v in original_headers.items() if not k.lower().startswith("nats-")}
        result = await self.store.append_unchecked(
            "evidence",
            tenant,
            entity,
            original,
            msg_id=f"riskpipe-dlq-replay:{self.projection}:{sequence}",
            headers={**headers, REPLAY_HEADER: str(letter.data.sequence)},
        )
        await self._record(DLQ_REPLAYED, letter, actor, reason, replayed_as=result.sequence)
        return result.sequence

    async def original(self, letter: DeadLetter) -> tuple[bytes, dict[str, str]]:
        """The complete original bytes and headers of ``letter``.

        From the dead letter itself, or, when its copy was cut short, from the
        stream it came from, checked against the dead letter's SHA-256.

        Raises:
            OriginalUnavailableError: truncated, and the stored original is gone or differs.
        """
        data = letter.data
        if not data.original_truncated:
            return data.original_bytes(), data.original_headers
        stored = await self.store.get(data.stream, data.sequence)
        where = f"{data.stream} sequence {data.sequence}"
        if stored is None:
            raise OriginalUnavailableError(
                f"dead letter {letter.sequence} holds only part of its original,"
                f" and {where} no longer exists"
            )
        if hashlib.sha256(stored.payload).hexdigest() != data.payload_sha256:
            raise OriginalUnavailableError(
                f"dead letter {letter.sequence} holds only part of its original,"
                f" and {where} does not match its payload_sha256"
            )
        return stored.payload, dict(stored.headers)

    async def purge(self, sequence: int, *, actor: str, reason: str = "") -> None:
        """Delete the dead letter from the queue, recording who did it.

        Raises:
            NotADeadLetterError: no such dead letter.
        """
        letter = await self.get(sequence)
        await self._record(DLQ_PURGED, letter, actor, reason)
        await self.store.delete(self.store.config.dlq_stream, sequence)

    async def _record(
        self,
        event_type: str,
        letter: DeadLetter,
        actor: str,
        reason: str,
        *,
        replayed_as: int | None = None,
    ) -> None:
        action = "replay" if event_type == DLQ_REPLAYED else "purge"
        event = CloudEvent(
            id=f"{action}-{self.projection}-{letter.sequence}",
            source=projection_source(self.projection) + "/dlq",
            type=event_type,
            subject=letter.entity,
            tenant=letter.tenant,
            time=self._clock(),
            causationid=letter.data.evidence_id,
            data=DlqActionData(
                projection=self.projection,
                dead_letter_sequence=letter.sequence,
                stream=letter.data.stream,
                sequence=letter.data.sequence,
                evidence_id=letter.data.evidence_id,
                actor=actor,
                reason=reason,
                replayed_as=replayed_as,
            ).model_dump(mode="json"),
        )
        await self.store.append(event)
