"""Operating the dead-letter queue: list, show, replay into the projection, purge.

Every replay and purge is recorded as an event on the audit stream, so the
trail shows who did what to which dead letter, and when.
"""

from __future__ import annotations

import hashlib
import uuid
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, NoReturn

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eventstore import NO_STREAM, CloudEvent, resent_headers, sendable_headers, validate_token
from eventstore.errors import ConcurrencyConflictError
from projections._deadletter import DEAD_LETTERED, DeadLetterData, projection_source
from projections._runner import split_subject
from projections.errors import (
    NotADeadLetterError,
    OriginalUnavailableError,
    ProjectionError,
    ReplayRefusedError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import EventStore, ExpectedVersion, RawMessage, RecordedEvent

__all__ = [
    "DLQ_PURGED",
    "DLQ_REPLAYED",
    "DLQ_REPLAY_STARTED",
    "FOREIGN_TRAIL_LIMIT",
    "REPLAY_HEADER",
    "DeadLetter",
    "DeadLetterQueue",
    "DlqActionData",
    "DlqActions",
    "ForeignRecord",
    "Original",
]

_log = structlog.get_logger(__name__)

REPLAY_HEADER = "Riskpipe-Replay-Of"
"""Set on evidence re-sent from the dead-letter queue: the original's stream sequence."""
DLQ_REPLAYED = "riskpipe.dlq.replayed.v1"
DLQ_PURGED = "riskpipe.dlq.purged.v1"
DLQ_REPLAY_STARTED = "riskpipe.dlq.replay_started.v1"
"""Claims a dead letter's replay, fenced on the letter's own audit subject: one claim wins."""
_ACTIONS = (DLQ_REPLAYED, DLQ_PURGED, DLQ_REPLAY_STARTED)
FOREIGN_TRAIL_LIMIT = 256
"""Messages of one dead letter's replay trail read, at most, past foreign ones at its end."""


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
    evidence_floor: int | None = Field(default=None, ge=0)
    """For a replay's claim: the entity's last evidence sequence before the re-send,
    where a resumed replay looks for it."""


def _not_a(rec: RecordedEvent, types: tuple[str, ...]) -> str | None:
    """Why ``rec`` is not an event of one of ``types``; ``None`` when it is one."""
    if rec.event is None:
        return f"not a valid event: {rec.error}"
    if rec.event.type not in types:
        return f"an event of type {rec.event.type!r}"
    return None


def _refusal(sequence: int, record: CloudEvent) -> ReplayRefusedError:
    """Why a replay of ``sequence`` is refused, from the last record on its trail."""
    data = DlqActionData.model_validate(record.data)
    replayed_as = data.replayed_as if record.type == DLQ_REPLAYED else None
    return ReplayRefusedError(sequence, data.actor, record.time, replayed_as)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as stored, with what operators did to it since."""

    sequence: int
    tenant: str
    entity: str
    data: DeadLetterData
    status: Literal["pending", "replayed"]
    replayed_as: int | None = None


class Original(NamedTuple):
    """A dead letter's complete original: its bytes, its parsed headers, its exact header block."""

    payload: bytes
    headers: dict[str, str]
    header_block: bytes | None


@dataclass(frozen=True, slots=True)
class DlqActions:
    """What the audit stream says happened to a projection's dead letters."""

    replayed: dict[int, int]
    """dead letter sequence -> sequence of the re-sent evidence"""
    purged: set[int]


@dataclass(frozen=True, slots=True)
class ForeignRecord:
    """A message on a DLQ or AUDIT subject that is not what the reader looks for there.

    Anyone who may publish on the subject can store one (junk, or the trace
    event nats-server publishes to a message's ``Nats-Trace-Dest``), and
    nobody may delete it from AUDIT: readers skip it and report it.
    """

    stream: str
    sequence: int
    subject: str
    reason: str


class DeadLetterQueue:
    """One projection's dead letters.

    Messages its readers skip as foreign are kept in :attr:`foreign` and
    logged (``dlq.foreign_message``), once each.

    Raises:
        ValueError: ``projection`` is not a subject token.
    """

    def __init__(
        self,
        store: EventStore,
        projection: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.store = store
        self.projection = validate_token(projection, what="projection")
        self._clock = clock
        self._new_id = new_id
        self.subject_filter = f"{store.config.prefix}.dlq.{projection}.>"
        self.foreign: list[ForeignRecord] = []
        """Messages the readers skipped: not a dead letter, not an action record."""
        self._reported: set[tuple[str, int]] = set()

    def _foreign(self, rec: RecordedEvent, reason: str) -> None:
        """Report a message skipped as foreign (once per stream and sequence)."""
        if (rec.stream, rec.sequence) in self._reported:
            return
        self._reported.add((rec.stream, rec.sequence))
        self.foreign.append(ForeignRecord(rec.stream, rec.sequence, rec.subject, reason))
        _log.warning(
            "dlq.foreign_message",
            stream=rec.stream,
            sequence=rec.sequence,
            subject=rec.subject,
            reason=reason,
        )

    def _action_of(self, rec: RecordedEvent) -> DlqActionData | None:
        """The action record ``rec`` holds, if it is one of this projection's; others are foreign.

        Action records of other projections are neither: they are skipped silently.
        """
        why = _not_a(rec, _ACTIONS)
        if why is None:
            try:
                data = DlqActionData.model_validate(rec.event.data if rec.event else None)
            except ValidationError as exc:
                why = f"not an action record: {exc.error_count()} invalid fields"
            else:
                return data if data.projection == self.projection else None
        self._foreign(rec, why)
        return None

    async def actions(self) -> DlqActions:
        """Replays and purges recorded on the audit stream for this projection."""
        replayed: dict[int, int] = {}
        purged: set[int] = set()
        async for rec in self.store.read_all(stream=self.store.config.stream_for("audit")):
            data = self._action_of(rec)
            if data is None or rec.event is None:
                continue
            seq = data.dead_letter_sequence
            if rec.event.type == DLQ_REPLAYED:
                replayed[seq] = data.replayed_as or 0
            elif rec.event.type == DLQ_PURGED:
                purged.add(seq)
        return DlqActions(replayed, purged)

    async def depth(self) -> int:
        """How many dead letters of this projection are queued."""
        return await self.store.count(self.store.config.stream_for("dlq"), self.subject_filter)

    async def oldest_age(self) -> float | None:
        """Age in seconds of the oldest queued dead letter, or ``None`` when there is none."""
        first = await self.store.get(
            self.store.config.stream_for("dlq"), 1, next_on_subject=self.subject_filter
        )
        return (
            None if first is None else max(0.0, (self._clock() - first.stored_at).total_seconds())
        )

    async def list(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        where: Callable[[DeadLetter], bool] | None = None,
    ) -> list[DeadLetter]:
        """The dead letters still in the queue, oldest first.

        A page of them: those after DLQ sequence ``after`` for which ``where``
        holds (all, without it), at most ``limit``. The read stops once the
        page is full, so a page costs what it reads, plus the audit stream.
        """
        actions = await self.actions()
        letters: list[DeadLetter] = []
        if limit is not None and limit <= 0:
            return letters
        records = self.store.read_all(
            stream=self.store.config.stream_for("dlq"),
            from_seq=after + 1,
            filter_subject=self.subject_filter,
        )
        async with aclosing(records):  # a full page stops the read early
            async for rec in records:
                if (why := _not_a(rec, (DEAD_LETTERED,))) is not None:
                    self._foreign(rec, why)
                    continue
                letter = self._dead_letter(rec, actions)
                if where is None or where(letter):
                    letters.append(letter)
                    if limit is not None and len(letters) >= limit:
                        break
        return letters

    async def get(self, sequence: int) -> DeadLetter:
        """The dead letter at ``sequence`` of the DLQ stream.

        Raises:
            NotADeadLetterError: nothing of this projection's is stored there.
        """
        rec = await self.store.get(self.store.config.stream_for("dlq"), sequence)
        if rec is None:
            raise NotADeadLetterError(f"no dead letter at DLQ sequence {sequence}")
        if (why := _not_a(rec, (DEAD_LETTERED,))) is not None:
            self._foreign(rec, why)
            raise NotADeadLetterError(f"DLQ sequence {sequence} is not a dead letter: {why}")
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
        ``Riskpipe-Replay-Of`` header. A dead letter is replayed at most once,
        however long after the first replay the second is asked for: the
        replay is claimed first with an append fenced on the letter's own
        audit subject, so of two replays one wins, and a replay asked for
        again later finds the record and is refused. A replay whose process
        died after its claim is finished by the next one, which re-sends
        the evidence only if it is not in the stream already.

        A dead letter whose copy of the original was cut short
        (``original_truncated``) replays the original as stored at its stream
        and sequence, once its SHA-256 matches the dead letter's.

        Raises:
            NotADeadLetterError: no such dead letter.
            ReplayRefusedError: it was replayed already, or is being replayed.
            OriginalUnavailableError: the copy is truncated and the stored
                original is gone or differs; nothing was claimed or sent.
        """
        letter = await self.get(sequence)
        trail = self._trail(letter)
        last, fence = await self._trail_state(trail, letter)
        if letter.replayed_as is not None and last is None:
            # replayed before claims existed: its record is on the entity's subject
            last = await self._replay_record(letter)
        if last is not None and last.event is not None and last.event.type == DLQ_REPLAYED:
            raise _refusal(sequence, last.event)
        original = await self.original(letter)  # before the claim: a refusal leaves no trace
        floor = await self._evidence_floor(letter, last)
        # one id per attempt: two replays racing must not pass for one retried append
        attempt = self._new_id()
        claim = await self._claim(
            letter, trail, fence, floor=floor, actor=actor, reason=reason, attempt=attempt
        )
        new_seq = await self._resend(letter, floor, original)
        try:
            await self._record(
                DLQ_REPLAYED, letter, actor, reason,
                replayed_as=new_seq, subject=trail, after=claim, attempt=attempt,
            )  # fmt: skip
        except ConcurrencyConflictError:
            await self._refuse_from(trail, letter)
        return new_seq

    def _trail(self, letter: DeadLetter) -> str:
        """The audit subject of one dead letter's replay: its claims and its record."""
        entity_subject = self.store.config.subject("audit", letter.tenant, letter.entity)
        return f"{entity_subject}.replay.{self.projection}.{letter.sequence}"

    async def _trail_state(
        self, trail: str, letter: DeadLetter
    ) -> tuple[RecordedEvent | None, int | None]:
        """The last claim or record on a replay trail, and the trail's last sequence (the fence).

        Foreign messages at the trail's end are skipped (and reported): the
        claim is still fenced after them. The trail is read from its start
        only then, and only so far.

        Raises:
            ProjectionError: more than ``FOREIGN_TRAIL_LIMIT`` messages on the trail.
        """
        last = await self.store.last(trail)
        if last is None:
            return None, None
        if self._on_trail(last, letter):
            return last, last.sequence
        found: RecordedEvent | None = None
        looked, seq, stream = 0, 1, self.store.config.stream_for("audit")
        while (
            rec := await self.store.get(stream, seq, next_on_subject=trail)
        ) is not None and rec.sequence < last.sequence:
            looked += 1
            if looked > FOREIGN_TRAIL_LIMIT:
                raise ProjectionError(
                    f"dead letter {letter.sequence}: more than {FOREIGN_TRAIL_LIMIT} messages"
                    f" on its replay trail {trail}; not replayed"
                )
            if self._on_trail(rec, letter):
                found = rec
            seq = rec.sequence + 1
        return found, last.sequence

    def _on_trail(self, rec: RecordedEvent, letter: DeadLetter) -> bool:
        """Whether ``rec`` is a claim or record of this letter's replay; if not, it is foreign."""
        data = self._action_of(rec)
        if data is None:
            self._foreign(rec, "an action record of another projection")
            return False
        if (
            rec.event is None
            or rec.event.type == DLQ_PURGED
            or data.dead_letter_sequence != letter.sequence
        ):
            self._foreign(rec, "not a replay claim or record of this dead letter")
            return False
        return True

    async def _replay_record(self, letter: DeadLetter) -> RecordedEvent | None:
        async for rec in self.store.read(letter.tenant, letter.entity, category="audit"):
            data = (rec.event.data or {}) if rec.event is not None else {}
            if (
                rec.event is not None
                and rec.event.type == DLQ_REPLAYED
                and data.get("projection") == self.projection
                and data.get("dead_letter_sequence") == letter.sequence
            ):
                return rec
        return None

    async def _evidence_floor(self, letter: DeadLetter, last: RecordedEvent | None) -> int:
        """Where the re-sent evidence can be: after the first claim's floor, or after now."""
        if last is not None and last.event is not None:
            return int(str((last.event.data or {}).get("evidence_floor") or 0))
        newest = await self.store.last_message(letter.data.subject)
        return 0 if newest is None else newest.seq

    async def _claim(  # noqa: PLR0913 - the letter, where, after what, and who
        self,
        letter: DeadLetter,
        trail: str,
        after: int | None,
        *,
        floor: int,
        actor: str,
        reason: str,
        attempt: str,
    ) -> int:
        """Claim the replay: the first claim, or the next one after an unfinished replay."""
        try:
            return await self._record(
                DLQ_REPLAY_STARTED, letter, actor, reason,
                subject=trail, after=after,
                floor=floor, attempt=attempt,
            )  # fmt: skip
        except ConcurrencyConflictError:
            await self._refuse_from(trail, letter)

    async def _refuse_from(self, trail: str, letter: DeadLetter) -> NoReturn:
        """Raise why the replay of ``letter`` lost its fence, from the trail's last record."""
        last, _ = await self._trail_state(trail, letter)
        if last is None or last.event is None:
            raise ProjectionError(
                f"dead letter {letter.sequence}: its replay record on {trail} is unreadable"
            )
        raise _refusal(letter.sequence, last.event)

    async def _resend(
        self,
        letter: DeadLetter,
        floor: int,
        original: Original | None = None,
    ) -> int:
        """Append the original again, unless a replay that died got that far already.

        ``original``: its bytes and headers, as :meth:`original` gives them (read here if not).
        """
        msg_id = f"riskpipe-dlq-replay:{self.projection}:{letter.sequence}"
        tenant, entity = split_subject(letter.data.subject)
        async for rec in self.store.read(tenant, entity, from_version=floor + 1):
            if rec.headers.get("Nats-Msg-Id") == msg_id:
                return rec.sequence
        payload, original_headers, block = original or await self.original(letter)
        replay = {REPLAY_HEADER: str(letter.data.sequence)}
        # the original's header lines byte for byte, but for its own Nats-* ones; from a
        # dead letter without its block, the parsed headers the store will send
        headers = (
            resent_headers(block, replay)
            if block is not None
            else {**sendable_headers(original_headers), **replay}
        )
        result = await self.store.append_unchecked(
            "evidence", tenant, entity, payload, msg_id=msg_id, headers=headers
        )
        return result.sequence

    async def original(self, letter: DeadLetter) -> Original:
        """The complete original bytes and headers of ``letter``, and its exact header block.

        From the dead letter itself, or, when its copy was cut short, from the
        stream it came from, checked against the dead letter's SHA-256.

        Raises:
            OriginalUnavailableError: truncated, and the stored original is gone or differs.
        """
        data = letter.data
        if not data.original_truncated:
            return Original(data.original_bytes(), data.original_headers, data.header_block())
        stored = await self._stored(data.stream, data.sequence)
        where = f"{data.stream} sequence {data.sequence}"
        if stored is None:
            raise OriginalUnavailableError(
                f"dead letter {letter.sequence} holds only part of its original,"
                f" and {where} no longer exists"
            )
        if hashlib.sha256(stored.data).hexdigest() != data.payload_sha256:
            raise OriginalUnavailableError(
                f"dead letter {letter.sequence} holds only part of its original,"
                f" and {where} does not match its payload_sha256"
            )
        return Original(stored.data, dict(stored.headers), stored.header_block)

    async def _stored(self, stream: str, sequence: int) -> RawMessage | None:
        """The message at ``sequence`` with its header block as stored, or ``None``.

        Read as a consumer receives it, not with a direct get: a direct get
        hands back headers the server adds, parsed, and only those parsed.
        """
        batches = self.store.read_batches(stream=stream, from_seq=sequence, until_seq=sequence)
        async with aclosing(batches):
            async for batch in batches:
                for raw in batch:
                    return raw if raw.seq == sequence else None
        return None

    async def purge(self, sequence: int, *, actor: str, reason: str = "") -> None:
        """Delete the dead letter from the queue, recording who did it.

        Raises:
            NotADeadLetterError: no such dead letter.
        """
        letter = await self.get(sequence)
        await self._record(DLQ_PURGED, letter, actor, reason)
        await self.store.delete(self.store.config.stream_for("dlq"), sequence)

    async def _record(  # noqa: PLR0913 - what, on which letter, by whom, where and after what
        self,
        event_type: str,
        letter: DeadLetter,
        actor: str,
        reason: str,
        *,
        replayed_as: int | None = None,
        subject: str | None = None,
        after: int | None = None,
        floor: int | None = None,
        attempt: str | None = None,
    ) -> int:
        """Append an action on ``letter``; fenced on ``subject`` when given; its sequence."""
        action = {DLQ_REPLAYED: "replay", DLQ_PURGED: "purge"}.get(event_type, "replay-claim")
        suffix = "" if attempt is None else f"-{attempt}"
        event = CloudEvent(
            id=f"{action}-{self.projection}-{letter.sequence}{suffix}",
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
                evidence_floor=floor,
            ).model_dump(mode="json"),
        )
        if subject is None:
            return (await self.store.append(event)).sequence
        fence: ExpectedVersion = NO_STREAM if after is None else after
        return (await self.store.append(event, subject=subject, expected_version=fence)).sequence
