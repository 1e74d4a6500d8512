"""Where events live: subjects, streams and buckets, and the config each one must have."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore._codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES
from eventstore._tokens import Token, validate_token

__all__ = ["MAX_PARTITIONS", "PARTITIONS_KEY", "Category", "StoreConfig", "partition_of"]

Category = Literal["evidence", "risk", "dlq", "audit"]
_NS = 1_000_000_000
MAX_PARTITIONS = 256
"""Upper bound on P: each partition is a durable consumer and a lease."""
PARTITIONS_KEY = "riskpipe.partitions"
"""The evidence stream's metadata key that records P, as ``riskpipe init`` set it."""
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


@functools.lru_cache(maxsize=65_536)  # once per entity, not once per message
def partition_of(tenant: str, entity: str, partitions: int) -> int:
    """The partition nats-server's ``{{partition(P,1,2)}}`` transform gives an entity.

    FNV-1a (32 bit) over the tenant and entity tokens written one after the
    other, modulo P: the same function the server applies when it stores
    evidence, so a reader finds an entity's stored subject without asking.
    """
    value = _FNV_OFFSET
    for byte in f"{tenant}{entity}".encode():
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value % partitions


# Headers and the envelope's own fields ride on top of the payload limit.
_HEADER_ALLOWANCE = 4096


def _ns(delta: timedelta) -> int:
    return int(delta.total_seconds() * _NS)


class StoreConfig(BaseModel):
    """Names and durability settings of the streams and buckets.

    The defaults give ``rp.evidence.<tenant>.<entity>`` in stream ``EVIDENCE``
    (stored as ``rp.evidence.<partition>.<tenant>.<entity>``: the stream's
    subject transform adds the partition), ``rp.risk.…`` in ``RISK``,
    ``rp.dlq.<projection>.…`` in ``DLQ`` and ``rp.audit.…`` in ``AUDIT``, plus
    the KV buckets ``rp-checkpoints`` and ``rp-leases``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: Token = "rp"
    evidence_stream: Token = "EVIDENCE"
    risk_stream: Token = "RISK"
    dlq_stream: Token = "DLQ"
    audit_stream: Token = "AUDIT"
    checkpoint_bucket: Token = "rp-checkpoints"
    lease_bucket: Token = "rp-leases"
    duplicate_window: timedelta = Field(default=timedelta(hours=2), ge=timedelta(minutes=1))
    lease_ttl: timedelta = Field(default=timedelta(seconds=15), ge=timedelta(seconds=1))
    replicas: int = Field(default=1, ge=1, le=5)
    partitions: int = Field(default=16, ge=1, le=MAX_PARTITIONS)
    election_window: timedelta = Field(default=timedelta(seconds=15), ge=timedelta(0))
    """How long an append keeps retrying a transient failure (a stream's leader being
    elected, a client reconnecting to another node) before it raises it."""
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, gt=0, le=8 * 1024 * 1024)
    max_depth: int = Field(default=DEFAULT_MAX_DEPTH, ge=4, le=256)

    def stream_for(self, category: Category) -> str:
        """The stream that holds a category of events."""
        return {
            "evidence": self.evidence_stream,
            "risk": self.risk_stream,
            "dlq": self.dlq_stream,
            "audit": self.audit_stream,
        }[category]

    def subject(self, category: Category, tenant: str, entity: str) -> str:
        """``<prefix>.<category>.<tenant>.<entity>``, each part checked as a token.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a valid token.
        """
        validate_token(tenant, what="tenant")
        validate_token(entity, what="entity")
        return f"{self.prefix}.{category}.{tenant}.{entity}"

    def stored_subject(self, category: Category, tenant: str, entity: str) -> str:
        """The subject an entity's events are stored on: evidence carries its partition.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a valid token.
        """
        subject = self.subject(category, tenant, entity)
        if category != "evidence":
            return subject
        partition = partition_of(tenant, entity, self.partitions)
        return f"{self.prefix}.evidence.{partition}.{tenant}.{entity}"

    def stored(self, subject: str) -> str:
        """``subject`` as the store keeps it: an evidence publish subject gains its partition."""
        parts = subject.split(".")
        if len(parts) != 4 or parts[0] != self.prefix or parts[1] != "evidence":  # noqa: PLR2004
            return subject
        return self.stored_subject("evidence", parts[2], parts[3])

    def partition_filter(self, partition: int) -> str:
        """The stored subjects of one partition's evidence: ``<prefix>.evidence.<p>.>``.

        Raises:
            ValueError: ``partition`` is not in ``0 .. partitions - 1``.
        """
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
        return f"{self.prefix}.evidence.{partition}.>"

    def evidence_transform(self) -> dict[str, str]:
        """The evidence stream's subject transform: the server writes the partition in."""
        return {
            "src": f"{self.prefix}.evidence.*.*",
            "dest": f"{self.prefix}.evidence.{{{{partition({self.partitions},1,2)}}}}"
            ".{{wildcard(1)}}.{{wildcard(2)}}",
        }

    def dlq_subject(self, projection: str, tenant: str, entity: str) -> str:
        """``<prefix>.dlq.<projection>.<tenant>.<entity>``.

        Raises:
            ValueError: a part is not a valid token.
        """
        validate_token(projection, what="projection")
        return self.subject("dlq", tenant, entity).replace(
            f"{self.prefix}.dlq.", f"{self.prefix}.dlq.{projection}.", 1
        )

    def stream_configs(self) -> list[dict[str, Any]]:
        """The JetStream configs of every stream, KV buckets included."""
        return [
            self._evidence(),
            self._stream(self.risk_stream, "risk", immutable=True, atomic=True),
            self._stream(self.dlq_stream, "dlq", immutable=False, atomic=False),
            self._stream(self.audit_stream, "audit", immutable=True, atomic=False),
            self._bucket(self.checkpoint_bucket, ttl=None),
            self._bucket(self.lease_bucket, ttl=self.lease_ttl),
        ]

    def _stream(self, name: str, category: str, *, immutable: bool, atomic: bool) -> dict[str, Any]:
        return {
            "name": name,
            "subjects": [f"{self.prefix}.{category}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "num_replicas": self.replicas,
            "duplicate_window": _ns(self.duplicate_window),
            # Evidence is capped at the payload limit; derived events (a dead letter
            # carries the original bytes base64-encoded) get twice that.
            "max_msg_size": self.max_payload_bytes * (1 if category == "evidence" else 2)
            + _HEADER_ALLOWANCE,
            "deny_delete": immutable,
            "deny_purge": immutable,
            "allow_rollup_hdrs": False,
            "allow_msg_ttl": False,
            "allow_atomic": atomic,
            "allow_direct": True,
        }

    def _evidence(self) -> dict[str, Any]:
        """Only ``<prefix>.evidence.<tenant>.<entity>`` is accepted, and stored partitioned."""
        config = self._stream(self.evidence_stream, "evidence", immutable=True, atomic=True)
        return {
            **config,
            "subjects": [f"{self.prefix}.evidence.*.*"],
            "subject_transform": self.evidence_transform(),
            "metadata": {PARTITIONS_KEY: str(self.partitions)},
        }

    def _bucket(self, bucket: str, *, ttl: timedelta | None) -> dict[str, Any]:
        return {
            "name": f"KV_{bucket}",
            "subjects": [f"$KV.{bucket}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "new",
            "num_replicas": self.replicas,
            "max_msgs_per_subject": 1,
            "max_age": _ns(ttl) if ttl is not None else 0,
            "duplicate_window": _ns(min(ttl, timedelta(minutes=2)))
            if ttl
            else _ns(timedelta(minutes=2)),
            "deny_delete": True,
            "deny_purge": False,
            "allow_rollup_hdrs": True,
            "allow_direct": True,
        }
