"""The pipeline's state in numbers, and whether every evidence event is accounted for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from eventstore import ConsumerSettings
from eventstore.errors import DecodeError, NotProvisionedError
from projections import DeadLetterQueue, read_checkpoint
from projections.risk import RiskAssessedData
from riskpipe.wiring import evidence_filter

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["PipelineStatus", "pipeline_status"]


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
    dead_lettered: int
    pending: int
    consumer_changed: dict[str, list[object]]
    """What in the consumer's config someone else changed: ``{field: [found, expected]}``."""
    checkpoint_refused: str | None = None
    """Why the stored checkpoint is not one a worker starts from (``checkpoint`` is then 0)."""
    foreign: dict[str, list[int]] = field(default_factory=dict)
    """Sequences on RISK and DLQ that are not assessments or dead letters (not counted)."""

    @property
    def balanced(self) -> bool:
        """Evidence = assessed + dead-lettered + pending."""
        return self.evidence == self.assessed + self.dead_lettered + self.pending

    def as_dict(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {**asdict(self), "balanced": self.balanced}


async def pipeline_status(store: EventStore, projection: str) -> PipelineStatus:
    """Gather the status of ``projection`` from the streams, its consumer and its checkpoint.

    Raises:
        NotProvisionedError: the streams do not exist (run ``riskpipe init``).
    """
    config = store.config
    names = (config.evidence_stream, config.risk_stream, config.dlq_stream, config.audit_stream)
    streams = {name: int((await store.stream_state(name))["messages"]) for name in names}
    consumer, changed = await _consumer(store, projection)
    stored = await read_checkpoint(store, projection, config.evidence_stream)
    checkpoint, refused = stored.sequence, stored.refused
    dlq = DeadLetterQueue(store, projection)
    depth = await store.count(config.dlq_stream, dlq.subject_filter)
    actions = await dlq.actions()
    pending = consumer["num_pending"] + consumer["num_ack_pending"] if consumer else 0
    assessed = await store.count(config.risk_stream, f"{config.prefix}.risk.>")
    foreign: dict[str, list[int]] = {}
    if streams[config.evidence_stream] < assessed + depth + len(actions.purged) + pending:
        foreign = await _foreign(store, dlq)  # more effects than evidence: look for why
        assessed -= len(foreign.get(config.risk_stream, ()))
        depth -= len(foreign.get(config.dlq_stream, ()))
    return PipelineStatus(
        streams=streams,
        consumer=consumer,
        checkpoint=checkpoint,
        dlq_depth=depth,
        dlq_replayed=len(actions.replayed),
        dlq_purged=len(actions.purged),
        evidence=streams[config.evidence_stream],
        assessed=assessed,
        dead_lettered=depth + len(actions.purged),
        pending=pending if consumer else streams[config.evidence_stream],
        consumer_changed=changed,
        checkpoint_refused=None if refused is None else str(refused),
        foreign=foreign,
    )


async def _foreign(store: EventStore, dlq: DeadLetterQueue) -> dict[str, list[int]]:
    """Messages on RISK that are not valid assessments, and on the DLQ that are not dead letters.

    Anyone who may publish there can store one (junk, a nats-server trace
    event); counting them as effects would make the books look wrong. Read
    only when the counts exceed the evidence: it reads both streams.
    """
    found: dict[str, list[int]] = {}
    async for batch in store.read_batches(stream=store.config.risk_stream):
        for raw in batch:
            try:
                data = store.decoded(raw)[1]
            except DecodeError:
                data = None
            if not isinstance(data, RiskAssessedData):
                found.setdefault(raw.stream, []).append(raw.seq)
    await dlq.list()  # what it skips, it reports as foreign
    for record in dlq.foreign:
        if record.stream == store.config.dlq_stream:
            found.setdefault(record.stream, []).append(record.sequence)
    return found


async def _consumer(
    store: EventStore, projection: str
) -> tuple[dict[str, int] | None, dict[str, list[object]]]:
    """The consumer's counts, and what in its config differs from what a worker sets up."""
    try:
        info = await store.consumer(projection).info()
    except NotProvisionedError:
        return None, {}
    # as a worker's runner creates it: every evidence, no server-side delivery cap
    expected = ConsumerSettings(max_deliver=-1, filter_subject=evidence_filter(store.config))
    changed = {k: list(v) for k, v in expected.drift(info.get("config", {})).items()}
    counts = {
        "num_pending": int(info["num_pending"]),
        "num_ack_pending": int(info["num_ack_pending"]),
        "num_redelivered": int(info["num_redelivered"]),
        "ack_floor": int(info["ack_floor"]["stream_seq"]),
        "delivered": int(info["delivered"]["stream_seq"]),
    }
    return counts, changed
