"""Key-value entries on JetStream buckets, with compare-and-set by revision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore._jetstream._publisher import OutboundMessage
from eventstore._tokens import validate_token
from eventstore.errors import ConcurrencyConflictError, EventStoreError, JetStreamAPIError

if TYPE_CHECKING:
    from eventstore._jetstream._client import JetStreamClient

__all__ = ["KVEntry", "KeyValue"]

_WRONG_LAST_SEQUENCE = 10071
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

    async def get(self, key: str) -> KVEntry | None:
        """The current entry for ``key``, or ``None`` when absent or deleted."""
        raw = await self.js.direct_get_last(self.stream, self._subject(key))
        if raw is None or raw.headers.get("KV-Operation") in _DELETED:
            return None
        return KVEntry(key, raw.data, raw.seq)

    async def put(self, key: str, value: bytes, *, revision: int | None = None) -> int:
        """Write ``value``; with ``revision`` (0 = must not exist) only if it is current.

        Returns the new revision.

        Raises:
            ConcurrencyConflictError: ``revision`` is not the key's current revision.
        """
        subject = self._subject(key)
        headers = {} if revision is None else {"Nats-Expected-Last-Subject-Sequence": str(revision)}
        fut = await self.js.publisher.publish(OutboundMessage(subject, value, headers))
        try:
            ack = await fut
        except JetStreamAPIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                current = await self.get(key)
                actual = current.revision if current is not None else 0
                raise ConcurrencyConflictError(subject, revision or 0, actual) from exc
            raise
        if ack is None:
            raise EventStoreError(f"put {subject}: empty acknowledgement")
        return ack.seq
