"""The pipeline's state in numbers, and whether every evidence event is accounted for."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.errors import NotProvisionedError
from projections import (
    DeadLetterQueue,
    consumer_name,
    expected_consumer,
    handled_floor,
    partition_views,
    read_checkpoint,
    read_leases,
    read_members,
)
from projections.errors import EvidenceReplacedError
from projections.risk import ASSESSED, verify_evidence_identity

if TYPE_CHECKING:
    from eventstore import EventStore, RawMessage, StoreConfig
    from projections import LeaseRecord

__all__ = ["LeaseOwnership", "PipelineStatus", "WorkerShare", "lease_ownership", "pipeline_status"]

_LATER_STREAMS = ("review", "outcome", "config", "shadow")
"""Streams a store made by an older ``riskpipe init`` may lack: listed when they exist."""


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """One worker's partitions, as the lease bucket holds them now."""

    worker: str
    partitions: list[int]
    expires_at: float
    """When its first lease runs out unless renewed (Unix time, by the worker's own clock);
    its membership's, when it holds no partition."""
    member: bool
    """Its membership is live. False: it left, or crashed, and its leases are running out."""


@dataclass(frozen=True, slots=True)
class LeaseOwnership:
    """Which worker holds which partition (``riskpipe worker`` runs by leases)."""

    ttl: float | None
    """The lease TTL in seconds, the bucket's ``max_age``."""
    workers: list[WorkerShare]
    """Every live member, and every worker a lease names, by id."""
    unowned: list[int]
    """Partitions nobody holds: between owners in a rebalance, or no worker runs."""


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """Counts per stream, the consumer's view, and the evidence accounting."""

    streams: dict[str, int]
    consumer: dict[str, int] | None
    checkpoint: int
    dlq_depth: int
    dlq_replayed: int
    dlq_purged: int
    evidence: int
    assessed: int
    """Evidence events answered by at least one assessment of this projection on RISK."""
    dead_lettered: int
    pending: int
    consumer_changed: dict[str, list[object]]
    """What in the consumer's config someone else changed: ``{field: [found, expected]}``."""
    risk_foreign: int = 0
    """Messages on RISK that are no assessment of this projection's evidence: not counted."""
    risk_repeated: int = 0
    """Assessments answering evidence that an earlier assessment answered: counted once."""
    checkpoint_refused: str | None = None
    """Why the stored checkpoint is not one a worker starts from (``checkpoint`` is then 0)."""
    foreign: dict[str, list[int]] = field(default_factory=dict)
    """Sequences on RISK and DLQ that are not assessments or dead letters (not counted)."""
    evidence_replaced: str | None = None
    """Why EVIDENCE no longer holds the evidence the assessments answer (re-created)."""
    leases: LeaseOwnership | None = None
    """Who owns the partitions; ``None`` when the lease bucket does not exist."""

    @property
    def balanced(self) -> bool:
        """Evidence = assessed + dead-lettered + pending."""
        return self.gap == 0

    @property
    def gap(self) -> int:
        """Evidence neither assessed, dead-lettered nor pending (negative: counted twice)."""
        return self.evidence - (self.assessed + self.dead_lettered + self.pending)

    @property
    def idle(self) -> bool:
        """The consumer exists and has nothing left to deliver and nothing unacknowledged."""
        c = self.consumer
        return c is not None and c["num_pending"] == 0 and c["num_ack_pending"] == 0

    @property
    def unaccounted(self) -> bool:
        """The accounting has a gap that no acknowledgement still to come can close.

        A message in flight is counted as pending and, once its result is
        stored but before it is acknowledged, as assessed or dead-lettered as
        well: it can only make the sum too large for a moment. Evidence that
        is missing from every count (a positive gap) never comes back by
        itself, in flight or not; any difference left once the consumer is
        idle is a real one too.
        """
        if self.consumer is None or self.balanced:
            return False
        return self.gap > 0 or self.idle

    def as_dict(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {**asdict(self), "balanced": self.balanced, "gap": self.gap}


async def pipeline_status(store: EventStore, projection: str) -> PipelineStatus:
    """Gather the status of ``projection`` from the streams, its consumer and its checkpoint.

    The evidence count is taken first, and only assessments of evidence up
    to that point are counted, so evidence arriving meanwhile can only show
    as pending. Counting assessments by the evidence they answer reads RISK
    once (see :func:`_answered`).

    Raises:
        NotProvisionedError: the streams do not exist (run ``riskpipe init``).
    """
    config = store.config
    names = (
        config.stream_for("evidence"),
        config.stream_for("risk"),
        config.stream_for("dlq"),
        config.stream_for("audit"),
    )
    states = {name: await store.stream_state(name) for name in names}
    streams = {name: int(state["messages"]) for name, state in states.items()}
    for category in _LATER_STREAMS:  # made by a later `riskpipe init`: absent from older stores
        name = config.stream_for(category)
        with contextlib.suppress(NotProvisionedError):
            streams[name] = int((await store.stream_state(name))["messages"])
    consumer, changed = await _consumers(store, projection)
    checkpoint, refused = await _checkpoints(store, projection)
    dlq = DeadLetterQueue(store, projection)
    depth = await store.count(config.stream_for("dlq"), dlq.subject_filter)
    actions = await dlq.actions()
    pending = consumer["num_pending"] + consumer["num_ack_pending"] if consumer else 0
    answers = await _answered(
        store, projection, int(states[config.stream_for("evidence")]["last_seq"])
    )
    foreign = {config.stream_for("risk"): answers.foreign} if answers.foreign else {}
    if (
        streams[config.stream_for("evidence")]
        < answers.assessed + depth + len(actions.purged) + pending
    ):
        # more dead letters than can be: look for messages on the DLQ that are none
        await dlq.list()  # what it skips, it keeps as foreign
        junk = [r.sequence for r in dlq.foreign if r.stream == config.stream_for("dlq")]
        if junk:
            foreign[config.stream_for("dlq")] = junk
            depth -= len(junk)
    try:
        await verify_evidence_identity(store, projection)
        replaced = None
    except EvidenceReplacedError as exc:
        replaced = str(exc)
    try:
        leases = await lease_ownership(store, projection)
    except NotProvisionedError:  # made before leases; `riskpipe init` adds the bucket
        leases = None
    return PipelineStatus(
        streams=streams,
        consumer=consumer,
        checkpoint=checkpoint,
        dlq_depth=depth,
        dlq_replayed=len(actions.replayed),
        dlq_purged=len(actions.purged),
        evidence=streams[config.stream_for("evidence")],
        assessed=answers.assessed,
        dead_lettered=depth + len(actions.purged),
        pending=pending if consumer else streams[config.stream_for("evidence")],
        consumer_changed=changed,
        risk_foreign=len(answers.foreign),
        risk_repeated=answers.repeated,
        checkpoint_refused=refused,
        foreign=foreign,
        evidence_replaced=replaced,
        leases=leases,
    )


async def lease_ownership(store: EventStore, projection: str) -> LeaseOwnership:
    """Each worker's partitions, from the lease bucket: the members, and what each lease names.

    The bucket is read key by key while the workers keep writing it, so in the
    middle of a rebalance a partition may show as unowned, or a worker that
    just left as still holding one: the next call shows the next round.

    Raises:
        NotProvisionedError: the lease bucket does not exist.
    """
    ttl = await store.kv(store.config.lease_bucket).ttl()
    members = await read_members(store, projection)
    leases = await read_leases(store, projection)
    held: dict[str, list[LeaseRecord]] = {}
    partitions: dict[str, list[int]] = {}
    for partition, record in sorted(leases.items()):
        held.setdefault(record.owner, []).append(record)
        partitions.setdefault(record.owner, []).append(partition)
    workers = [
        WorkerShare(
            worker=worker,
            partitions=partitions.get(worker, []),
            expires_at=min(
                [r.expires_at for r in held.get(worker, [])] or [members[worker].expires_at]
            ),
            member=worker in members,
        )
        for worker in sorted(members.keys() | held.keys())
    ]
    return LeaseOwnership(
        ttl=ttl.total_seconds() if ttl is not None else None,
        workers=workers,
        unowned=[p for p in range(store.config.partitions) if p not in leases],
    )


@dataclass(frozen=True, slots=True)
class _Answers:
    assessed: int
    foreign: list[int]
    """Sequences on RISK of messages that are no assessment of this projection."""
    repeated: int


async def _answered(store: EventStore, projection: str, last_evidence: int) -> _Answers:
    """How many evidence events up to ``last_evidence`` have an assessment on RISK.

    Each assessment names the evidence it answers (``data.evidence``: stream
    and sequence). Counting messages instead would count a message someone
    else put on RISK, or a second copy of an assessment, as evidence
    accounted for, and hide evidence that never was. No count the server
    keeps tells these apart, so RISK is read once, undecoded, in batches;
    each message is parsed, not validated (see docs/operations.md for the
    cost). Evidence answered is marked in a bitmap: one bit per evidence.
    """
    config = store.config
    seen = bytearray(last_evidence // 8 + 1)
    assessed = repeated = 0
    foreign: list[int] = []
    batches = store.read_batches(
        stream=config.stream_for("risk"), filter_subject=f"{config.prefix}.risk.>"
    )
    async for batch in batches:
        for raw in batch:
            seq = _answer(raw, config, projection, last_evidence)
            if seq is None:
                foreign.append(raw.seq)
            elif seen[seq >> 3] & (1 << (seq & 7)):
                repeated += 1
            else:
                seen[seq >> 3] |= 1 << (seq & 7)
                assessed += 1
    return _Answers(assessed, foreign, repeated)


def _answer(raw: RawMessage, config: StoreConfig, projection: str, last: int) -> int | None:
    """The evidence sequence ``raw`` is an assessment of, if it is one of ``projection``'s.

    An assessment of evidence after ``last`` (stored since the evidence was
    counted) answers none of the evidence counted.
    """
    try:
        doc = orjson.loads(raw.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != ASSESSED:
        return None
    data, tenant, entity = doc.get("data"), doc.get("tenant"), doc.get("subject")
    if not isinstance(data, dict) or raw.subject != f"{config.prefix}.risk.{tenant}.{entity}":
        return None
    ref = data.get("evidence")
    if data.get("projection") != projection or not isinstance(ref, dict):
        return None
    seq = ref.get("sequence")
    if (
        ref.get("stream") != config.stream_for("evidence")
        or type(seq) is not int
        or not 1 <= seq <= last
    ):
        return None
    return seq


async def _consumers(
    store: EventStore, projection: str
) -> tuple[dict[str, int] | None, dict[str, list[object]]]:
    """The partitions' consumers' counts summed, and what in their configs someone changed.

    ``None`` before any worker created one. A partition whose consumer is
    not there yet counts every evidence of it as pending; ``ack_floor`` is
    the evidence sequence up to which every partition acknowledged all.
    """
    views = await partition_views(store, projection, source="evidence")
    if all(view.info is None for view in views):
        return None, {}
    counts = {"num_pending": 0, "num_ack_pending": 0, "num_redelivered": 0, "delivered": 0}
    changed: dict[str, list[object]] = {}
    for view in views:
        if view.info is None:
            subjects = store.config.partition_filter(view.partition)
            counts["num_pending"] += await store.count(
                store.config.stream_for("evidence"), subjects
            )
            continue
        info = view.info
        expected = expected_consumer(store, view.partition, source="evidence")
        for key, value in expected.drift(info.get("config", {})).items():
            changed[f"{view.consumer}.{key}"] = list(value)
        counts["num_pending"] += int(info["num_pending"])
        counts["num_ack_pending"] += int(info["num_ack_pending"])
        counts["num_redelivered"] += int(info["num_redelivered"])
        counts["delivered"] = max(counts["delivered"], int(info["delivered"]["stream_seq"]))
    counts["ack_floor"] = await handled_floor(store, projection, source="evidence")
    return counts, changed


async def _checkpoints(store: EventStore, projection: str) -> tuple[int, str | None]:
    """Up to which evidence sequence the partitions' checkpoints cover all, and a refusal found.

    Each partition's checkpoint covers its own evidence up to it; its next
    evidence after the checkpoint is the first it does not cover. Below the
    earliest of those, every evidence is covered.
    """
    config = store.config
    info = await store.client.stream_info(config.stream_for("evidence"))
    covered = 0 if info is None else int(info["state"]["last_seq"])
    refused: str | None = None
    for partition in range(config.partitions):
        name = consumer_name(projection, partition)
        stored = await read_checkpoint(store, name, config.stream_for("evidence"))
        if stored.refused is not None and refused is None:
            refused = str(stored.refused)
        after = await store.client.direct_get(
            config.stream_for("evidence"),
            stored.sequence + 1,
            next_by_subject=config.partition_filter(partition),
        )
        if after is not None:
            covered = min(covered, after.seq - 1)
    return covered, refused
