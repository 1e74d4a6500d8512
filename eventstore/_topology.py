"""Where events live: subjects, streams and buckets, and the config each one must have."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eventstore._codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES
from eventstore._tokens import Token, validate_token

__all__ = [
    "MAX_PARTITIONS",
    "PARTITIONS_KEY",
    "Category",
    "StoreConfig",
    "StreamSpec",
    "partition_of",
]

Category = str
"""A category of events: the subject token after the prefix that names its stream."""
_NS = 1_000_000_000
MAX_PARTITIONS = 256
"""Upper bound on P: each partition is a durable consumer and a lease."""
PARTITIONS_KEY = "riskpipe.partitions"
"""The partitioned stream's metadata key that records P, as ``riskpipe init`` set it."""
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


@functools.lru_cache(maxsize=65_536)  # once per entity, not once per message
def partition_of(tenant: str, entity: str, partitions: int) -> int:
    """The partition nats-server's ``{{partition(P,1,2)}}`` transform gives an entity.

    FNV-1a (32 bit) over the tenant and entity tokens written one after the
    other, modulo P: the same function the server applies when it stores
    events, so a reader finds an entity's stored subject without asking.
    """
    value = _FNV_OFFSET
    for byte in f"{tenant}{entity}".encode():
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value % partitions


# Headers and the envelope's own fields ride on top of the payload limit.
_HEADER_ALLOWANCE = 4096


def _ns(delta: timedelta) -> int:
    return int(delta.total_seconds() * _NS)


class StreamSpec(BaseModel):
    """One stream of the store: its subject token, its name, and what it allows.

    A stream holds ``<prefix>.<category>.>``. A *partitioned* stream accepts
    only ``<prefix>.<category>.<tenant>.<entity>`` and stores it as
    ``<prefix>.<category>.<partition>.<tenant>.<entity>`` (the server's subject
    transform adds the partition), so that each partition can be consumed on
    its own. ``payload_factor`` scales the store's payload limit for streams of
    derived events (a dead letter carries the original bytes base64-encoded).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: Token
    name: Token
    immutable: bool = True
    """Deletes and purges are refused: history cannot be erased."""
    atomic: bool = False
    """Atomic batch publish is allowed."""
    partitioned: bool = False
    payload_factor: int = Field(default=1, ge=1, le=4)


class StoreConfig(BaseModel):
    """The streams and buckets of a store, their names and durability settings.

    ``streams`` is what the application stores: each :class:`StreamSpec` names
    a category of events and its stream. The first stream is the store's
    default for reads and consumers; at most one stream is partitioned, into
    ``partitions`` partitions. Two KV buckets hold projection checkpoints and
    partition leases.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: Token = "rp"
    streams: tuple[StreamSpec, ...] = ()
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

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        for what in ("category", "name"):
            values = [getattr(spec, what) for spec in self.streams]
            if twice := sorted({value for value in values if values.count(value) > 1}):
                raise ValueError(f"two streams have the {what} {', '.join(twice)}")
        if len([spec for spec in self.streams if spec.partitioned]) > 1:
            raise ValueError("at most one stream can be partitioned")
        return self

    def spec(self, category: Category) -> StreamSpec:
        """The stream that holds a category of events.

        Raises:
            ValueError: no stream holds ``category``.
        """
        for spec in self.streams:
            if spec.category == category:
                return spec
        known = ", ".join(spec.category for spec in self.streams) or "none"
        raise ValueError(f"no stream holds {category!r} events (categories: {known})")

    def spec_of(self, stream: str) -> StreamSpec:
        """The spec of the stream called ``stream``.

        Raises:
            ValueError: no stream has that name.
        """
        for spec in self.streams:
            if spec.name == stream:
                return spec
        raise ValueError(f"no stream is called {stream!r}")

    def stream_for(self, category: Category) -> str:
        """The name of the stream that holds a category of events.

        Raises:
            ValueError: no stream holds ``category``.
        """
        return self.spec(category).name

    @property
    def default_stream(self) -> str:
        """The first stream's name: what reads and consumers use when they name none.

        Raises:
            ValueError: the config has no streams.
        """
        if not self.streams:
            raise ValueError("the store config names no streams")
        return self.streams[0].name

    @property
    def partitioned(self) -> StreamSpec | None:
        """The partitioned stream, if one is."""
        return next((spec for spec in self.streams if spec.partitioned), None)

    def payload_limit(self, category: Category) -> int:
        """The largest payload an event of ``category`` may have.

        Raises:
            ValueError: no stream holds ``category``.
        """
        return self.max_payload_bytes * self.spec(category).payload_factor

    def subject(self, category: Category, tenant: str, entity: str) -> str:
        """``<prefix>.<category>.<tenant>.<entity>``, each part checked as a token.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a valid token.
        """
        validate_token(tenant, what="tenant")
        validate_token(entity, what="entity")
        return f"{self.prefix}.{category}.{tenant}.{entity}"

    def stored_subject(self, category: Category, tenant: str, entity: str) -> str:
        """The subject an entity's events are stored on: a partitioned stream's carry the partition.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a valid token.
        """
        subject = self.subject(category, tenant, entity)
        partitioned = self.partitioned
        if partitioned is None or category != partitioned.category:
            return subject
        partition = partition_of(tenant, entity, self.partitions)
        return f"{self.prefix}.{category}.{partition}.{tenant}.{entity}"

    def stored(self, subject: str) -> str:
        """``subject`` as the store keeps it: a partitioned stream's publish subject gains P."""
        parts = subject.split(".")
        partitioned = self.partitioned
        if (
            partitioned is None
            or len(parts) != 4  # noqa: PLR2004 - prefix, category, tenant, entity
            or parts[0] != self.prefix
            or parts[1] != partitioned.category
        ):
            return subject
        return self.stored_subject(partitioned.category, parts[2], parts[3])

    def partition_filter(self, partition: int) -> str:
        """The stored subjects of one partition: ``<prefix>.<category>.<p>.>``.

        Raises:
            ValueError: no stream is partitioned, or ``partition`` is not in
                ``0 .. partitions - 1``.
        """
        spec = self.require_partitioned()
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
        return f"{self.prefix}.{spec.category}.{partition}.>"

    def partition_transform(self) -> dict[str, str]:
        """The partitioned stream's subject transform: the server writes the partition in.

        Raises:
            ValueError: no stream is partitioned.
        """
        category = self.require_partitioned().category
        return {
            "src": f"{self.prefix}.{category}.*.*",
            "dest": f"{self.prefix}.{category}.{{{{partition({self.partitions},1,2)}}}}"
            ".{{wildcard(1)}}.{{wildcard(2)}}",
        }

    def require_partitioned(self) -> StreamSpec:
        """The partitioned stream.

        Raises:
            ValueError: no stream is partitioned.
        """
        if (spec := self.partitioned) is None:
            raise ValueError("no stream of the store config is partitioned")
        return spec

    def stream_configs(self) -> list[dict[str, Any]]:
        """The JetStream configs of every stream, KV buckets included."""
        return [
            *(self._stream(spec) for spec in self.streams),
            self._bucket(self.checkpoint_bucket, ttl=None),
            self._bucket(self.lease_bucket, ttl=self.lease_ttl),
        ]

    def _stream(self, spec: StreamSpec) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": spec.name,
            "subjects": [f"{self.prefix}.{spec.category}.>"],
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "num_replicas": self.replicas,
            "duplicate_window": _ns(self.duplicate_window),
            "max_msg_size": self.payload_limit(spec.category) + _HEADER_ALLOWANCE,
            "deny_delete": spec.immutable,
            "deny_purge": spec.immutable,
            "allow_rollup_hdrs": False,
            "allow_msg_ttl": False,
            "allow_atomic": spec.atomic,
            "allow_direct": True,
        }
        if spec.partitioned:  # only <prefix>.<category>.<tenant>.<entity>, stored partitioned
            config["subjects"] = [f"{self.prefix}.{spec.category}.*.*"]
            config["subject_transform"] = self.partition_transform()
            config["metadata"] = {PARTITIONS_KEY: str(self.partitions)}
        return config

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
