"""Key-value entries on JetStream buckets, with compare-and-set by revision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from eventstore._jetstream._publisher import OutboundMessage
from eventstore._tokens import validate_token
from eventstore.errors import (
    ConcurrencyConflictError,
    EventStoreError,
    JetStreamAPIError,
    NotProvisionedError,
)

if TYPE_CHECKING:
    from eventstore._jetstream._client import JetStreamClient

__all__ = ["KVEntry", "KeyValue"]

# 10071: wrong last sequence; KV compare-and-set may answer 10164 instead
_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
_NS = 1_000_000_000
_DELETED = ("DEL", "PURGE")


@dataclass(frozen=True, slots=True)
class KVEntry:
    """A value and the revision that wrote it (use it for compare-and-set)."""

    key: str
    value: bytes
    revision: int


class KeyValue:
    """One bucket. Keys are tokens; ``put(..., revision=r)`` succeeds only if ``r`` is current."""

    def __init__(self, js: JetStreamClient, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self.stream = f"KV_{bucket}"

    def _subject(self, key: str) -> str:
        for part in key.split("."):
            validate_token(part, what="key part")
        return f"$KV.{self.bucket}.{key}"

    async def get(self, key: str, *, leader: bool = False) -> KVEntry | None:
        """The current entry for ``key``, or ``None`` when absent or deleted.

        Any replica answers (a direct get), unless ``leader``: then the bucket's
        leader does, never a replica still catching up that holds an older value.
        """
        subject = self._subject(key)
        raw = await (
            self.js.leader_get_last(self.stream, subject)
            if leader
            else self.js.direct_get_last(self.stream, subject)
        )
        if raw is None or raw.headers.get("KV-Operation") in _DELETED:
            return None
        return KVEntry(key, raw.data, raw.seq)

    async def _last_revision(self, key: str) -> int:
        """The revision of the key's last message, a delete marker included (0: none)."""
        raw = await self.js.direct_get_last(self.stream, self._subject(key))
        return raw.seq if raw is not None else 0

    async def create(self, key: str, value: bytes) -> int:
        """Write ``value`` only if ``key`` is absent or deleted; returns the new revision.

        A deleted key keeps a marker until the bucket's ``max_age`` removes it;
        creating over it is a compare-and-set on the marker's revision, so two
        creators still cannot both succeed.

        Raises:
            ConcurrencyConflictError: the key holds a value.
        """
        try:
            return await self.put(key, value, revision=0)
        except ConcurrencyConflictError as exc:
            if exc.actual not in (None, 0):
                raise
            # the conflict read saw no value: a delete marker (or a racing delete)
            return await self.put(key, value, revision=await self._last_revision(key))

    async def delete(self, key: str, *, revision: int | None = None) -> int:
        """Mark ``key`` deleted; with ``revision``, only if it is current. Returns the marker's.

        Raises:
            ConcurrencyConflictError: ``revision`` is not the key's current revision.
        """
        return await self._write(key, b"", revision, {"KV-Operation": "DEL"})

    async def ttl(self) -> timedelta | None:
        """How long an entry lives after its last write (the bucket's ``max_age``), if it expires.

        Raises:
            NotProvisionedError: the bucket does not exist.
        """
        info = await self.js.stream_info(self.stream)
        if info is None:
            raise NotProvisionedError(f"bucket {self.bucket} does not exist; run `riskpipe init`")
        max_age = int(info["config"].get("max_age") or 0)
        return timedelta(seconds=max_age / _NS) if max_age > 0 else None

    async def keys(self, pattern: str) -> list[str]:
        """The keys matching ``pattern`` (``*`` and ``>`` wildcards) that hold a value."""
        prefix = f"$KV.{self.bucket}."
        info = await self.js.api(
            f"STREAM.INFO.{self.stream}", {"subjects_filter": f"{prefix}{pattern}"}
        )
        subjects = (info.get("state") or {}).get("subjects") or {}
        found = []
        for subject in sorted(subjects):
            key = subject.removeprefix(prefix)
            if await self.get(key) is not None:
                found.append(key)
        return found

    async def put(self, key: str, value: bytes, *, revision: int | None = None) -> int:
        """Write ``value``; with ``revision`` (0 = must not exist) only if it is current.

        Returns the new revision.

        Raises:
            ConcurrencyConflictError: ``revision`` is not the key's current revision.
        """
        return await self._write(key, value, revision, {})

    async def _write(
        self, key: str, value: bytes, revision: int | None, headers: dict[str, str]
    ) -> int:
        subject = self._subject(key)
        if revision is not None:
            headers = {**headers, "Nats-Expected-Last-Subject-Sequence": str(revision)}
        fut = await self.js.publisher.publish(OutboundMessage(subject, value, headers))
        try:
            ack = await fut
        except JetStreamAPIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                current = await self.get(key)
                actual = current.revision if current is not None else 0
                raise ConcurrencyConflictError(subject, revision or 0, actual) from exc
            raise
        if ack is None:
            raise EventStoreError(f"put {subject}: empty acknowledgement")
        return ack.seq
