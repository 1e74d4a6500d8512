"""Reading what the log says happened: assessments by evidence, dead letters, the ack floor.

Assessments are joined to evidence by the evidence's stream sequence, which
every assessment records (``data.evidence.sequence``; its CloudEvents
``causationid`` is the evidence id). The join reads the risk stream alongside
the evidence stream and buffers only what it has read ahead: an entity's
assessments follow its evidence order, so once one of them is past an evidence
sequence, that evidence has no (further) assessment to wait for.

Validating an assessment costs more than everything else a replay does with
it, so the join validates only what it must: an assessment of evidence in the
range is handed out as a :class:`StoredAssessment` (its JSON, read by orjson
alone) for the caller to settle by comparing bytes, or to
:meth:`AssessmentJoin.resolve`, which validates it strictly. The outcome is
the same as validating each one as it is read.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from eventstore.errors import EventStoreError
from projections import (
    DEAD_LETTERED,
    DLQ_PURGED,
    DLQ_REPLAYED,
    DeadLetterData,
    DlqActionData,
    handled_floor,
    split_subject,
)
from projections.risk import ASSESSED, RiskAssessedData

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from datetime import datetime

    from eventstore import CloudEvent, EventStore, RawMessage, RecordedEvent
    from projections.audit._scope import ReplayScope

__all__ = [
    "AssessmentJoin",
    "DeadLetterRef",
    "EntityKey",
    "EvidenceOutcome",
    "RecordedAssessment",
    "StoredAssessment",
    "UnreadableAssessment",
    "ack_floor",
    "closing",
    "closing_iterator",
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
        await closing_iterator(iterator)


async def closing_iterator(iterator: AsyncIterator[T]) -> None:
    """Close ``iterator`` if it can be closed (a generator: its consumer is deleted at once)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


@lru_cache(maxsize=1 << 16)
def entity_key(subject: str) -> EntityKey:
    """The ``(tenant, entity)`` of a ``<prefix>.<category>.<tenant>.<entity>`` subject.

    Cached: a replay asks twice per evidence event, for a few subjects per entity,
    and validating the tokens each time cost it several percent.
    """
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

    @property
    def evidence_sequence(self) -> int:
        """The stream sequence of the evidence it assesses."""
        return self.data.evidence.sequence


@dataclass(slots=True)
class StoredAssessment:
    """A risk stream message not validated yet, whose JSON names the evidence it assesses.

    ``value`` is its JSON as orjson reads it, without the strict decoder's
    checks (duplicate keys, limits, canonical form): whether it is a valid
    assessment is not known yet. Settling it by comparing bytes with the
    canonical encoding proves all of that at once; anything else validates
    ``raw`` strictly. A value, never changed, but not a frozen dataclass: one
    is made per assessment read, and a frozen one costs several times more.
    """

    raw: RawMessage
    value: dict[str, Any]
    evidence_sequence: int
    key: EntityKey
    """The entity whose subject it is stored on."""

    @property
    def sequence(self) -> int:
        """Its risk stream sequence."""
        return self.raw.seq


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
    """The evidence sequence up to which the projection acknowledged everything (0: none).

    Across its partitions' consumers: see :func:`projections._partitions.handled_floor`.
    """
    return await handled_floor(store, projection, source="evidence")


async def dead_letters(
    store: EventStore, projection: str, scope: ReplayScope
) -> dict[int, DeadLetterRef]:
    """The projection's dead letters in ``scope`` by evidence sequence, purged ones included."""
    refs: dict[int, DeadLetterRef] = {}
    config = store.config
    async for rec in store.read_all(
        stream=config.stream_for("dlq"), filter_subject=scope.dlq_filter(config, projection)
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
        stream=config.stream_for("audit"), filter_subject=scope.audit_filter(config)
    ):
        event = rec.event
        if event is None or event.type not in (DLQ_REPLAYED, DLQ_PURGED):
            continue
        if scope.entity is not None and event.subject != scope.entity:
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
    each entity is its ``seed`` (the state the range starts from). Those and
    the ones after the range are validated as they are read; the ones in the
    range are handed out by :meth:`take` as they are stored.
    """

    def __init__(
        self,
        store: EventStore,
        batches: AsyncIterator[list[RawMessage]],
        *,
        from_seq: int,
        until_seq: int,
        keep_beyond: bool,
    ) -> None:
        self._store = store
        self._batches = batches
        self._arrived: Iterator[RawMessage] = iter(())
        self._from, self._until = from_seq, until_seq
        self._keep_beyond = keep_beyond
        self._buffer: dict[int, list[RecordedAssessment | StoredAssessment]] = {}
        self._high: dict[EntityKey, int] = {}
        self._valid_high: dict[EntityKey, int] = {}
        self._exhausted = False
        self._unreadable: list[UnreadableAssessment] = []
        self.seeds: dict[EntityKey, RecordedAssessment] = {}
        self.beyond: list[RecordedAssessment] = []
        """With ``keep_beyond``: assessments of evidence after the range's end."""

    @property
    def unreadable(self) -> list[UnreadableAssessment]:
        """Messages on the risk stream found not to be valid assessments, in stream order."""
        return sorted(self._unreadable, key=lambda bad: bad.sequence)

    async def take(
        self, sequence: int, key: EntityKey, *, wait: bool
    ) -> list[RecordedAssessment | StoredAssessment]:
        """The assessments of evidence ``sequence`` stored on entity ``key``'s subject, in order.

        With ``wait``, reads on until one is found or none can come any more;
        without, returns only what has been read already. What is not a
        :class:`RecordedAssessment` yet is not validated: settle it, or
        :meth:`resolve` it. Assessments of ``sequence`` stored on another
        entity's subject stay for :meth:`leftovers`: what a reader of one
        entity's subjects finds never depends on the other entities.
        """
        if wait:
            while (
                not self._holds(sequence, key)
                and not self._passed(sequence, key)
                and await self._read_one()
            ):
                pass
        found = self._buffer.get(sequence)
        if not found:
            return []
        if len(found) == 1 and found[0].key == key:  # the common case
            del self._buffer[sequence]
            return found
        own = [stored for stored in found if stored.key == key]
        if len(own) == len(found):
            del self._buffer[sequence]
        else:
            self._buffer[sequence] = [stored for stored in found if stored.key != key]
        return own

    def _holds(self, sequence: int, key: EntityKey) -> bool:
        for stored in self._buffer.get(sequence, ()):  # noqa: SIM110 - any() costs more here
            if stored.key == key:
                return True
        return False

    def resolve(
        self, found: list[RecordedAssessment | StoredAssessment]
    ) -> list[RecordedAssessment]:
        """The valid ones of ``found``, validated; the others are kept as unreadable."""
        return [valid for stored in found if (valid := self._validated(stored)) is not None]

    async def leftovers(self) -> list[RecordedAssessment]:
        """Read the rest of the risk stream; every in-range assessment nobody took."""
        while await self._read_one():
            pass
        left = self.resolve([a for found in self._buffer.values() for a in found])
        self._buffer.clear()
        return sorted(left, key=lambda a: a.sequence)

    def _passed(self, sequence: int, key: EntityKey) -> bool:
        """Whether a valid assessment of ``key`` after evidence ``sequence`` has been read."""
        if self._high.get(key, 0) < sequence:
            return False
        if self._valid_high.get(key, 0) < sequence:
            # only a valid assessment proves it: validate those of key read ahead
            for after, found in list(self._buffer.items()):
                if after > sequence:
                    self._validate_of(key, after, found)
            self._high[key] = self._valid_high.get(key, 0)
        return self._high[key] >= sequence

    def _validate_of(
        self, key: EntityKey, sequence: int, found: list[RecordedAssessment | StoredAssessment]
    ) -> None:
        kept = [
            valid
            for stored in found
            if (valid := self._validated(stored) if stored.key == key else stored) is not None
        ]
        if kept:
            self._buffer[sequence] = kept
        else:
            del self._buffer[sequence]

    def _validated(
        self, stored: RecordedAssessment | StoredAssessment
    ) -> RecordedAssessment | None:
        if isinstance(stored, RecordedAssessment):
            return stored
        return self._validate(stored.raw)

    def _validate(self, raw: RawMessage) -> RecordedAssessment | None:
        """The assessment ``raw`` holds, validated; ``None`` (kept as unreadable) if none."""
        found = read_assessment(self._store, self._store.recorded(raw))
        if isinstance(found, UnreadableAssessment):
            self._unreadable.append(found)
            return None
        key = found.key
        self._valid_high[key] = max(self._valid_high.get(key, 0), found.evidence_sequence)
        return found

    async def _read_one(self) -> bool:
        raw = next(self._arrived, None)
        while raw is None:
            batch = None if self._exhausted else await anext(self._batches, None)
            if batch is None:
                self._exhausted = True
                return False
            self._arrived = iter(batch)
            raw = next(self._arrived, None)
        stored = self._stored(raw)
        if stored is not None and self._from <= stored.evidence_sequence <= self._until:
            self._place(stored)
        elif valid := self._validate(raw):
            self._place(valid)
        return True

    def _stored(self, raw: RawMessage) -> StoredAssessment | None:
        """The message as stored, if its JSON is an assessment's that names its evidence."""
        try:
            value = orjson.loads(raw.data)
        except orjson.JSONDecodeError:
            return None  # validated strictly next, for its error
        data = (
            value.get("data") if isinstance(value, dict) and value.get("type") == ASSESSED else None
        )
        evidence = data.get("evidence") if isinstance(data, dict) else None
        sequence = evidence.get("sequence") if isinstance(evidence, dict) else None
        if type(sequence) is not int:  # not a bool either
            return None
        return StoredAssessment(raw, value, sequence, entity_key(raw.subject))

    def _place(self, found: RecordedAssessment | StoredAssessment) -> None:
        sequence, key = found.evidence_sequence, found.key
        self._high[key] = max(self._high.get(key, 0), sequence)
        if isinstance(found, StoredAssessment):
            self._buffer.setdefault(sequence, []).append(found)
        elif sequence < self._from:
            seed = self.seeds.get(key)
            if seed is None or seed.data.evidence.sequence < sequence:
                self.seeds[key] = found
        elif sequence > self._until:
            if self._keep_beyond:
                self.beyond.append(found)
        else:
            self._buffer.setdefault(sequence, []).append(found)
