"""A projection over its source stream: one durable consumer per partition, seen as one.

A projection reads one category of events (its *source*). Over the
partitioned stream, the consumer of partition ``p`` is named
``<projection>-<p>`` and delivers ``<prefix>.<category>.<p>.>`` only; over
any other stream there is one partition, 0, whose consumer delivers the
whole stream. Status, audit and tools need the projection's view across
them: what is pending, and up to which source sequence everything is handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventstore import ConsumerSettings
from eventstore.errors import NotProvisionedError

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = [
    "PartitionView",
    "consumer_name",
    "expected_consumer",
    "handled_floor",
    "partition_filter",
    "partition_views",
    "replicated",
    "source_partitions",
    "undrained_partitions",
]


def consumer_name(projection: str, partition: int) -> str:
    """The durable consumer (and checkpoint key) of one partition of ``projection``."""
    return f"{projection}-{partition}"


def source_partitions(store: EventStore, source: str) -> int:
    """How many partitions a projection of ``source`` has: P over the partitioned stream, else 1."""
    partitioned = store.config.partitioned
    return store.config.partitions if partitioned and partitioned.category == source else 1


def partition_filter(store: EventStore, source: str, partition: int) -> str:
    """The stored subjects of one partition of ``source``.

    Raises:
        ValueError: no stream holds ``source``, or there is no such partition.
    """
    if store.config.spec(source).partitioned:
        return store.config.partition_filter(partition)
    if partition != 0:
        raise ValueError(f"{source} is not partitioned: its only partition is 0")
    return f"{store.config.prefix}.{source}.>"


def expected_consumer(
    store: EventStore, partition: int, *, source: str, subjects: str | None = None
) -> ConsumerSettings:
    """What a worker's runner sets up for a partition: its subjects, no server-side cap.

    ``subjects`` narrows an unpartitioned source to part of its stream. What
    ``status`` and ``init`` compare a consumer with to tell that someone else
    changed it.
    """
    return ConsumerSettings(
        max_deliver=-1, filter_subject=subjects or partition_filter(store, source, partition)
    )


@dataclass(frozen=True, slots=True)
class PartitionView:
    """One partition's consumer as the server reports it (``info`` is ``None``: not created)."""

    partition: int
    consumer: str
    info: dict[str, Any] | None

    @property
    def pending(self) -> int:
        """Messages not delivered yet plus delivered and not acknowledged."""
        if self.info is None:
            return 0
        return int(self.info["num_pending"]) + int(self.info["num_ack_pending"])

    @property
    def ack_floor(self) -> int:
        """The stream sequence up to which this partition's messages are all acknowledged."""
        return 0 if self.info is None else int(self.info["ack_floor"]["stream_seq"])


async def partition_views(
    store: EventStore, projection: str, *, source: str
) -> list[PartitionView]:
    """Every partition's consumer of ``projection`` (which reads ``source``), in order."""
    views = []
    stream = store.config.stream_for(source)
    for partition in range(source_partitions(store, source)):
        name = consumer_name(projection, partition)
        try:
            info = await store.consumer(name, stream=stream).info()
        except NotProvisionedError:
            info = None
        views.append(PartitionView(partition, name, info))
    return views


async def handled_floor(store: EventStore, projection: str, *, source: str) -> int:
    """The source sequence up to which the projection handled everything (0: none).

    Each partition's consumer knows its own ack floor; the first event it
    has not acknowledged is the first of its subjects after that floor (none
    when nothing is pending). Everything before the earliest of those, across
    partitions, is handled.
    """
    info = await store.client.stream_info(store.config.stream_for(source))
    if info is None:
        return 0
    floor = int(info["state"]["last_seq"])
    for view in await partition_views(store, projection, source=source):
        first = await _first_unhandled(store, view, source)
        if first is not None:
            floor = min(floor, first - 1)
    return floor


async def undrained_partitions(
    store: EventStore, projection: str, through: int, *, source: str
) -> frozenset[int]:
    """The partitions that still hold events at or before sequence ``through`` not handled.

    A partition with no events there (empty, or only newer ones) is
    drained whether or not its consumer exists yet. What a batch run of
    several processes waits for before each of them exits.
    """
    left = set()
    for view in await partition_views(store, projection, source=source):
        first = await _first_unhandled(store, view, source)
        if first is not None and first <= through:
            left.add(view.partition)
    return frozenset(left)


async def _first_unhandled(store: EventStore, view: PartitionView, source: str) -> int | None:
    """The sequence of the partition's first event not acknowledged (``None``: none is).

    The stream's leader answers: a replica still catching up would answer
    "none" for what it has not received yet, and the partition would pass
    for drained. A consumer that says nothing is pending is taken at its word
    only when the stream has no other replica (its own is the leader's): on a
    cluster, its replica may be the one catching up.
    """
    if view.info is not None and view.pending == 0 and not replicated(view.info):
        return None
    return await store.client.leader_next_sequence(
        store.config.stream_for(source),
        view.ack_floor + 1,
        partition_filter(store, source, view.partition),
    )


def replicated(info: dict[str, Any]) -> bool:
    """Whether a consumer's info names other replicas (a clustered, replicated stream)."""
    return bool((info.get("cluster") or {}).get("replicas"))
