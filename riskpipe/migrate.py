"""``riskpipe migrate``: copy every evidence event of one store into another.

P is fixed when a store is made, and a store made before partitions cannot
be run at all: the way to another P is a new store holding the same
evidence. Only evidence is copied; the new store's workers derive the
assessments again, and the old store stays as the record of what it derived.

A copy is exact: the stored payload and header lines byte for byte (the
envelope, with its ids and times), under the event's key
(``Nats-Msg-Id``), in the source's stream order, so every entity's evidence
keeps its order. Each run first checks that the target holds a copy of the
source's beginning, message by message, then appends the rest fenced on the
target's last sequence (:meth:`eventstore.EventStore.append_in_order`): a run
that is killed, or run again after the copy finished, long after the
target's duplicate window, copies nothing twice and nothing out of order.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import structlog

from analyzers import EVIDENCE_TYPES
from eventstore import AppendResult, copy_of, recorded_partitions, redact, validate_token
from eventstore.errors import (
    ConcurrencyConflictError,
    DecodeError,
    EventStoreError,
    NotProvisionedError,
    PartitionsMismatchError,
)
from riskpipe.errors import RiskpipeError
from riskpipe.wiring import connect_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventstore import Copy, EventStore, RawMessage
    from riskpipe.settings import Settings

__all__ = ["MigrateError", "MigrateSummary", "Problem", "migrate"]

_log = structlog.get_logger(__name__)

MSG_ID = "Nats-Msg-Id"
CHUNK = 2048
"""Copies appended per round (their acknowledgements are awaited before the next)."""
_FENCE_HEADERS = 64
"""Bytes the key's and the fence's header lines add to a copy, besides the key itself."""
_RETRIES = 3
"""How often a round whose fence failed is checked against the target and sent again."""
_PROGRESS_SECONDS = 5.0
_AGAIN = "run the same command again: it checks what the target holds and copies the rest"


class MigrateError(RiskpipeError):
    """A migration that cannot start or go on; the target holds what was copied so far."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A source message that is not copied as valid evidence: where, and why."""

    sequence: int
    reason: str


@dataclass
class MigrateSummary:
    """What a run found and did, counted over the whole source up to ``until``.

    Every source message read is exactly one of: ``copied`` now,
    ``already_present`` (copied by an earlier run), a ``duplicates`` (an event
    already copied under the same key) or ``skipped``. ``invalid`` ones are
    copied (now or before) and listed too.
    """

    source: str
    target: str
    source_partitions: int | None
    """P of the source; ``None``: made before partitions."""
    target_partitions: int
    provisioned: list[str] = field(default_factory=list)
    """Streams and buckets this run created on the target."""
    until: int = 0
    """The source's last sequence when the run started: what it copies up to."""
    read: int = 0
    copied: int = 0
    already_present: int = 0
    duplicates: list[int] = field(default_factory=list)
    invalid: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    target_newer: int = 0
    """Messages the target holds after the whole copy: published to the target since."""

    @property
    def ok(self) -> bool:
        """Whether every source message is in the target, or was a duplicate of one that is."""
        return not self.skipped

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``--json`` prints it."""
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True, slots=True)
class _Item:
    """A source message to copy, and the entity it is stored under."""

    sequence: int
    tenant: str
    entity: str
    copy: Copy


def _address(subject: str, prefix: str, *, partitioned: bool) -> tuple[str, str] | None:
    """``(tenant, entity)`` of a stored evidence subject, or ``None`` for any other shape."""
    parts = subject.split(".")
    head = [*prefix.split("."), "evidence"]
    rest = parts[len(head) :]
    if parts[: len(head)] != head:
        return None
    if partitioned:
        if len(rest) != 3 or not rest[0].isdecimal():  # noqa: PLR2004 - <p>.<tenant>.<entity>
            return None
        rest = rest[1:]
    if len(rest) != 2:  # noqa: PLR2004 - <tenant>.<entity>
        return None
    try:
        return validate_token(rest[0]), validate_token(rest[1])
    except ValueError:
        return None


class _Plan:
    """The source's messages in stream order, each classified: copied how, or not at all."""

    def __init__(
        self, source: EventStore, summary: MigrateSummary, *, partitioned: bool, limit: int
    ) -> None:
        self._source = source
        self._summary = summary
        self._partitioned = partitioned
        self._limit = limit
        self._keys: set[str] = set()
        self._prefix = source.config.prefix

    async def items(self) -> AsyncIterator[_Item]:
        """What to copy, in the source's order; duplicates and skipped ones are only counted."""
        batches = self._source.read_batches(until_seq=self._summary.until)
        async for batch in batches:
            for raw in batch:
                self._summary.read += 1
                item = self._item(raw)
                if item is not None:
                    yield item

    def _item(self, raw: RawMessage) -> _Item | None:
        address = _address(raw.subject, self._prefix, partitioned=self._partitioned)
        if address is None:
            self._skip(
                raw.seq,
                f"subject {raw.subject} is not <prefix>.evidence.<p>.<t>.<e>"
                if self._partitioned
                else f"subject {raw.subject} is not <prefix>.evidence.<t>.<e>",
            )
            return None
        tenant, entity = address
        key, invalid = self._key(raw, tenant, entity)
        if invalid is None and key in self._keys:
            self._summary.duplicates.append(raw.seq)
            _log.info("migrate.duplicate", sequence=raw.seq, msg_id=key)
            return None
        copy = copy_of(raw, f"{self._prefix}.evidence.{tenant}.{entity}", key)
        size = len(copy.payload) + len(copy.headers.block) + len(key) + _FENCE_HEADERS
        if size > self._limit:
            self._skip(raw.seq, f"{size} bytes; the target takes at most {self._limit}")
            return None
        if invalid is None:
            self._keys.add(key)
        else:
            self._summary.invalid.append(Problem(raw.seq, invalid))
            _log.warning("migrate.invalid", sequence=raw.seq, reason=invalid)
        return _Item(raw.seq, tenant, entity, copy)

    def _key(self, raw: RawMessage, tenant: str, entity: str) -> tuple[str, str | None]:
        """The key to copy ``raw`` under, and why it is not valid evidence (``None``: it is).

        Valid evidence keeps its event's key. Anything else gets a key of its
        own, naming where it was: never one shaped like an event's (they begin
        with a digit), nor one a dead letter's replay in the target may use.
        """
        try:
            event, _ = self._source.decoded(raw)
        except DecodeError as exc:
            reason = f"not a valid event: {exc}"
        else:
            if event.type not in EVIDENCE_TYPES:
                reason = f"not evidence: {event.type}"
            elif (event.tenant, event.subject) != (tenant, entity):
                reason = (
                    f"evidence of {event.tenant}/{event.subject} stored under {tenant}/{entity}"
                )
            else:
                return event.msg_id, None
        return f"riskpipe-migrate:{raw.stream}:{raw.seq}", reason

    def _skip(self, sequence: int, reason: str) -> None:
        self._summary.skipped.append(Problem(sequence, reason))
        _log.error("migrate.skipped", sequence=sequence, reason=reason)


def _same(item: _Item, raw: RawMessage, prefix: str) -> bool:
    """Whether the target's ``raw`` is the copy of ``item``: same key, bytes and entity."""
    return (
        raw.headers.get(MSG_ID) == item.copy.msg_id
        and raw.data == item.copy.payload
        and _address(raw.subject, prefix, partitioned=True) == (item.tenant, item.entity)
    )


def _stored(result: AppendResult | EventStoreError) -> TypeGuard[AppendResult]:
    """Whether an append stored its copy now (not an error, not a duplicate)."""
    return isinstance(result, AppendResult) and not result.duplicate


def _not_a_copy(item: _Item | None, raw: RawMessage) -> MigrateError:
    key = raw.headers.get(MSG_ID, "none")
    if item is None:
        wanted = "nothing there (the source holds no more)"
    else:
        wanted = f"the source's message {item.sequence} ({item.tenant}/{item.entity})"
    return MigrateError(
        f"the target's evidence is not a copy of the source's: at sequence {raw.seq} it"
        f" holds {raw.subject} (key {key}) where a copy would hold {wanted}; migrate"
        " copies into a store without evidence, or continues a copy it made, and"
        " copied nothing"
    )


class _Copier:
    """Checks what the target holds against the plan, then appends the rest in order."""

    def __init__(
        self,
        target: EventStore,
        summary: MigrateSummary,
        progress: Callable[[MigrateSummary], None] | None,
    ) -> None:
        self._target = target
        self._summary = summary
        self._progress = progress
        self._prefix = target.config.prefix
        self._logged = time.monotonic()
        self.position = 0
        """The target's last evidence sequence: every copy is fenced on it."""

    async def check(self, items: AsyncIterator[_Item], last: int) -> None:
        """Match the target's evidence, up to ``last``, with the first ``items``.

        Messages after the end of the source are counted as newer: the copy was
        complete, and the target has been used since.

        Raises:
            MigrateError: a target message is not the copy the plan expects there.
        """
        async for batch in self._target.read_batches(until_seq=last):
            for raw in batch:
                self.position = raw.seq
                item = await anext(items, None)
                if item is None:
                    self._summary.target_newer += 1
                elif _same(item, raw, self._prefix):
                    self._summary.already_present += 1
                else:
                    raise _not_a_copy(item, raw)
        self.position = last

    async def copy(self, items: AsyncIterator[_Item]) -> None:
        """Append every remaining item, a round at a time.

        Raises:
            MigrateError: an append failed, or the target changed under the copy.
        """
        if self._summary.target_newer:
            return
        pending: list[_Item] = []
        async for item in items:
            pending.append(item)
            if len(pending) >= CHUNK:
                await self._round(pending)
                pending = []
        if pending:
            await self._round(pending)

    async def _round(self, items: list[_Item]) -> None:
        for _ in range(_RETRIES + 1):
            results = await self._target.append_in_order(
                [i.copy for i in items], after=self.position
            )
            stored = {r.sequence for r in results if _stored(r)}
            failed = next((r for r in results if not _stored(r)), None)
            if failed is None:
                self._summary.copied += len(results)
                self.position = max(stored, default=self.position)
                self._report()
                return
            items = await self._resync(items, failed, stored)
            self._report()
            if not items:
                return
        raise MigrateError(f"the target's evidence keeps changing under the copy; {_AGAIN}")

    async def _resync(
        self, items: list[_Item], failed: AppendResult | EventStoreError, stored: set[int]
    ) -> list[_Item]:
        """The items still to send after a round that did not store them all.

        The target's evidence after what was checked must be a run of the
        items from the first: the ones this round stored, and maybe copies a
        run killed mid-copy left in flight, which the server stored after this
        run had looked (this round's own copies of them were refused by their
        fences), or one whose acknowledgement was lost.

        Raises:
            MigrateError: the target holds something else, or the round failed otherwise.
        """
        stream = self._target.config.stream_for("evidence")
        last = int((await self._target.stream_state(stream))["last_seq"])
        taken = 0
        async for batch in self._target.read_batches(from_seq=self.position + 1, until_seq=last):
            for raw in batch:
                item = items[taken] if taken < len(items) else None
                if item is None or not _same(item, raw, self._prefix):
                    raise _not_a_copy(item, raw)
                taken += 1
                self.position = raw.seq
                if raw.seq in stored:
                    self._summary.copied += 1
                else:
                    self._summary.already_present += 1
        if isinstance(failed, ConcurrencyConflictError) or taken == len(items):
            return items[taken:]  # a failed append that was stored after all: taken now
        item = items[taken]
        if isinstance(failed, AppendResult):  # a duplicate: its key is stored somewhere else
            raise MigrateError(
                f"the target already holds {item.copy.msg_id} (source sequence"
                f" {item.sequence}) at sequence {failed.sequence}, out of place; {_AGAIN}"
            )
        raise MigrateError(f"copying source sequence {item.sequence} failed: {failed}; {_AGAIN}")

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(self._summary)
        if time.monotonic() - self._logged >= _PROGRESS_SECONDS:
            self._logged = time.monotonic()
            _log.info(
                "migrate.progress",
                copied=self._summary.copied,
                already_present=self._summary.already_present,
                read=self._summary.read,
                until=self._summary.until,
            )


async def migrate(
    source_settings: Settings,
    target_settings: Settings,
    *,
    partitions: int | None = None,
    progress: Callable[[MigrateSummary], None] | None = None,
) -> MigrateSummary:
    """Copy the evidence of the store at ``source_settings`` into the one at ``target_settings``.

    The target is provisioned first as ``riskpipe init`` would, with
    ``target_settings``' partitions and replicas; ``partitions``, when the
    caller asked for a P, must then be the target's.

    Raises:
        NotProvisionedError: the source has no evidence stream.
        MigrateError: the target cannot be reached or used, is the source itself,
            holds evidence that is not a copy of the source's beginning, or an
            append failed (what was copied stays; a new run goes on from it).
        EventStoreError: the source failed.
    """
    started = time.monotonic()
    async with await connect_store(source_settings, name="riskpipe-migrate") as source:
        stream = source.config.stream_for("evidence")
        info = await source.client.stream_info(stream)
        if info is None:
            raise NotProvisionedError(
                f"the source has no stream {stream}, so no evidence to copy: --nats-url names"
                " the store to copy from"
            )
        source_partitions = recorded_partitions(info["config"])
        target = await _connect_target(target_settings)
        async with target:
            summary = await _prepare(target, target_settings, info, partitions)
            summary.source = redact(source_settings.nats_url)
            summary.source_partitions = source_partitions
            summary.until = int(info["state"]["last_seq"])
            _log.info(
                "migrate.started",
                source=summary.source, target=summary.target,
                source_partitions=source_partitions, target_partitions=summary.target_partitions,
                provisioned=summary.provisioned, until=summary.until,
            )  # fmt: skip
            limit = await _size_limit(target)
            plan = _Plan(source, summary, partitioned=source_partitions is not None, limit=limit)
            copier = _Copier(target, summary, progress)
            items = aiter(plan.items())
            state = await target.stream_state(stream)
            await copier.check(items, int(state["last_seq"]))
            await copier.copy(items)
    _log.info(
        "migrate.finished",
        copied=summary.copied, already_present=summary.already_present,
        duplicates=len(summary.duplicates), invalid=len(summary.invalid),
        skipped=len(summary.skipped), target_newer=summary.target_newer,
        seconds=round(time.monotonic() - started, 3),
    )  # fmt: skip
    return summary


async def _connect_target(settings: Settings) -> EventStore:
    """The target store, connected; any failure to is the target's, and said so.

    Raises:
        MigrateError: it cannot be reached, refused the credentials, or a file is unusable.
    """
    try:
        return await connect_store(settings, name="riskpipe-migrate")
    except EventStoreError as exc:
        raise MigrateError(f"the target (--to): {exc}") from exc


async def _prepare(
    target: EventStore, settings: Settings, source: dict[str, Any], partitions: int | None
) -> MigrateSummary:
    """Provision the target as ``riskpipe init`` would, after checking it is another store.

    Raises:
        MigrateError: it is the source's store, was made before partitions or
            with another P than asked for, or a stream drifted.
    """
    stream = target.config.stream_for("evidence")
    found = await target.client.stream_info(stream)
    if found is not None and found.get("created") == source.get("created"):
        raise MigrateError(
            f"--to reaches the source store itself (the same {stream} stream, created"
            f" {source.get('created')}): give the URL, or the account's credentials"
            " (--to-creds, --to-user, ...), of the new store"
        )
    if found is not None:
        recorded = recorded_partitions(found["config"])
        if recorded is None:
            raise MigrateError(
                f"the target's {stream} was made before partitions: copy into a new store"
            )
        if partitions is not None and partitions != recorded:
            raise MigrateError(
                f"the target: {PartitionsMismatchError(stream, recorded, partitions)}"
            )
    report = await target.provision()
    if not report.ok:
        drifted = "; ".join(str(d) for d in report.drifted)
        raise MigrateError(f"the target's streams are not as `riskpipe init` makes them: {drifted}")
    return MigrateSummary(
        source="",
        target=redact(settings.nats_url),
        source_partitions=None,
        target_partitions=target.config.partitions,
        provisioned=list(report.created),
    )


async def _size_limit(target: EventStore) -> int:
    """The largest copy (payload and headers) the target's evidence stream and server take."""
    info = await target.client.stream_info(target.config.stream_for("evidence"))
    largest = int(info["config"].get("max_msg_size", -1)) if info is not None else -1
    server = target.client.max_payload
    return server if largest <= 0 else min(largest, server)
