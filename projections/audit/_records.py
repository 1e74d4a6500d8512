"""Reading what the log says happened: assessments by evidence, dead letters, the ack floor.

Assessments are joined to evidence by the evidence's stream sequence, which
every assessment records (``data.evidence.sequence``; its CloudEvents
``causationid`` is the evidence id). The join reads the risk stream alongside
the evidence stream and buffers only what it has read ahead: an entity's
assessments follow its evidence order, so once one of them is past an evidence
sequence, that evidence has no (further) assessment to wait for.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from eventstore.errors import EventStoreError, NotProvisionedError
from projections import (
    DEAD_LETTERED,
    DLQ_PURGED,
    DLQ_REPLAYED,
    DeadLetterData,
    DlqActionData,
    split_subject,
)
from projections.risk import ASSESSED, RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

    from eventstore import CloudEvent, EventStore, RecordedEvent
    from projections.audit._scope import ReplayScope

__all__ = [
    "AssessmentJoin",
    "DeadLetterRef",
    "EntityKey",
    "EvidenceOutcome",
    "RecordedAssessment",
    "UnreadableAssessment",
    "ack_floor",
    "closing",
    "dead_letters",
    "entity_key",
    "outcome_of",
    "read_assessment",
]

T = TypeVar("T")
EntityKey = tuple[str, str]
"""``(tenant, entity)``."""
EvidenceOutcome = Literal["assessed", "dead_lettered", "pending", "missing"]
"""What became of an evidence event: guarantee 7 allows exactly these."""


def outcome_of(
    sequence: int, *, assessed: bool, dead_lettered: bool, ack_floor: int
) -> EvidenceOutcome:
    """An evidence event's outcome; without an effect it is pending above the ack floor."""
    if assessed:
        return "assessed"
    if dead_lettered:
        return "dead_lettered"
    return "pending" if sequence > ack_floor else "missing"


@asynccontextmanager
async def closing(iterator: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a reading iterator however the block ends, so its consumer is deleted at once."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def entity_key(subject: str) -> EntityKey:
    """The ``(tenant, entity)`` of a ``<prefix>.<category>.<tenant>.<entity>`` subject."""
    return split_subject(subject)


@dataclass(frozen=True, slots=True)
class RecordedAssessment:
    """An assessment as the risk stream holds it."""

    sequence: int
    stored_at: datetime
    subject: str
    event: CloudEvent
    data: RiskAssessedData

    @property
    def key(self) -> EntityKey:
        """The entity whose subject it is stored on."""
        return entity_key(self.subject)


@dataclass(frozen=True, slots=True)
class UnreadableAssessment:
    """A message on the risk stream that is not a valid assessment."""

    sequence: int
    subject: str
    error: str


@dataclass(slots=True)
class DeadLetterRef:
    """What became of a dead-lettered evidence event."""

    evidence_sequence: int
    dlq_sequence: int | None
    """``None`` once purged: the dead letter itself is gone, the audit stream remembers it."""
    error_type: str | None = None
    error_message: str | None = None
    dead_lettered_at: datetime | None = None
    replayed_as: int | None = None
    purged: bool = False
    actions: list[DlqAction] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DlqAction:
    """An operator's replay or purge of a dead letter, from the audit stream."""

    kind: str
    """``replayed`` or ``purged``."""
    audit_sequence: int
    recorded_at: datetime
    actor: str
    reason: str
    dlq_sequence: int
    replayed_as: int | None


async def ack_floor(store: EventStore, projection: str) -> int:
    """The evidence sequence up to which the projection acknowledged everything (0: none)."""
    try:
        info = await store.consumer(projection).info()
    except NotProvisionedError:
        return 0
    return int(info["ack_floor"]["stream_seq"])


async def dead_letters(
    store: EventStore, projection: str, scope: ReplayScope
) -> dict[int, DeadLetterRef]:
    """The projection's dead letters in ``scope`` by evidence sequence, purged ones included."""
    refs: dict[int, DeadLetterRef] = {}
    config = store.config
    async for rec in store.read_all(
        stream=config.dlq_stream, filter_subject=scope.dlq_filter(config, projection)
    ):
        if rec.event is None or rec.event.type != DEAD_LETTERED:
            continue
        data = store.schemas.typed_data(rec.event)
        if isinstance(data, DeadLetterData) and data.sequence not in refs:
            refs[data.sequence] = DeadLetterRef(
                data.sequence, rec.sequence, data.error_type, data.error_message,
                data.dead_lettered_at,
            )  # fmt: skip
    async for action, evidence_sequence in _dlq_actions(store, projection, scope):
        ref = refs.setdefault(evidence_sequence, DeadLetterRef(evidence_sequence, None))
        ref.actions.append(action)
        if action.kind == "purged":
            ref.purged = True
        elif action.replayed_as is not None:
            ref.replayed_as = action.replayed_as
    return refs


async def _dlq_actions(
    store: EventStore, projection: str, scope: ReplayScope
) -> AsyncIterator[tuple[DlqAction, int]]:
    config = store.config
    async for rec in store.read_all(
        stream=config.audit_stream, filter_subject=scope.subject_filter(config, "audit")
    ):
        event = rec.event
        if event is None or event.type not in (DLQ_REPLAYED, DLQ_PURGED):
            continue
        data = store.schemas.typed_data(event)
        if not isinstance(data, DlqActionData) or data.projection != projection:
            continue
        kind = "replayed" if event.type == DLQ_REPLAYED else "purged"
        yield (
            DlqAction(
                kind, rec.sequence, event.time, data.actor, data.reason,
                data.dead_letter_sequence, data.replayed_as,
            ),
            data.sequence,
        )  # fmt: skip


def read_assessment(
    store: EventStore, rec: RecordedEvent
) -> RecordedAssessment | UnreadableAssessment:
    """The assessment a risk stream record holds, or why it holds none."""
    if rec.event is None:
        return UnreadableAssessment(rec.sequence, rec.subject, str(rec.error))
    if rec.event.type != ASSESSED:
        return UnreadableAssessment(
            rec.sequence, rec.subject, f"not an assessment: {rec.event.type}"
        )
    try:
        data = store.schemas.typed_data(rec.event)
    except EventStoreError as exc:
        return UnreadableAssessment(rec.sequence, rec.subject, str(exc))
    assert isinstance(data, RiskAssessedData)  # noqa: S101 - the registry maps the type to it
    return RecordedAssessment(rec.sequence, rec.stored_at, rec.subject, rec.event, data)


class AssessmentJoin:
    """Recorded assessments by evidence sequence, read from the risk stream only as far as needed.

    Assessments of evidence before the range are not kept: the latest one of
    each entity is its ``seed`` (the state the range starts from).
    """

    def __init__(
        self,
        store: EventStore,
        records: AsyncIterator[RecordedEvent],
        *,
        from_seq: int,
        until_seq: int,
        keep_beyond: bool,
    ) -> None:
        self._store = store
        self._records = records
        self._from, self._until = from_seq, until_seq
        self._keep_beyond = keep_beyond
        self._buffer: dict[int, list[RecordedAssessment]] = {}
        self._high: dict[EntityKey, int] = {}
        self._exhausted = False
        self.seeds: dict[EntityKey, RecordedAssessment] = {}
        self.unreadable: list[UnreadableAssessment] = []
        self.beyond: list[RecordedAssessment] = []
        """With ``keep_beyond``: assessments of evidence after the range's end."""

    async def take(self, sequence: int, key: EntityKey, *, wait: bool) -> list[RecordedAssessment]:
        """The recorded assessments of evidence ``sequence`` of entity ``key``, in stream order.

        With ``wait``, reads on until they are found or cannot come any more;
        without, returns only what has been read already.
        """
        if wait:
            while (
                sequence not in self._buffer
                and self._high.get(key, 0) < sequence
                and await self._read_one()
            ):
                pass
        return self._buffer.pop(sequence, [])

    async def leftovers(self) -> list[RecordedAssessment]:
        """Read the rest of the risk stream; every in-range assessment nobody took."""
        while await self._read_one():
            pass
        left = [a for found in self._buffer.values() for a in found]
        self._buffer.clear()
        return sorted(left, key=lambda a: a.sequence)

    async def _read_one(self) -> bool:
        if self._exhausted:
            return False
        rec = await anext(self._records, None)
        if rec is None:
            self._exhausted = True
            return False
        found = read_assessment(self._store, rec)
        if isinstance(found, UnreadableAssessment):
            self.unreadable.append(found)
            return True
        self._place(found)
        return True

    def _place(self, found: RecordedAssessment) -> None:
        sequence, key = found.data.evidence.sequence, found.key
        self._high[key] = max(self._high.get(key, 0), sequence)
        if sequence < self._from:
            seed = self.seeds.get(key)
            if seed is None or seed.data.evidence.sequence < sequence:
                self.seeds[key] = found
        elif sequence > self._until:
            if self._keep_beyond:
                self.beyond.append(found)
        else:
            self._buffer.setdefault(sequence, []).append(found)
