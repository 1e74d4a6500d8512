"""The checkpointed projection runtime and the risk projection.

A :class:`ProjectionRunner` fetches from a durable consumer, passes each message
through a middleware chain to a handler that *returns* the events it produces,
commits them, and only then acknowledges the message.
"""

from projections._assignment import assign
from projections._checkpoint import Checkpoint, CheckpointRecord, read_checkpoint
from projections._deadletter import (
    DEAD_LETTERED,
    DeadLetterData,
    dead_letter,
    dlq_subject,
    projection_source,
)
from projections._dlq import (
    DLQ_PURGED,
    DLQ_REPLAY_STARTED,
    DLQ_REPLAYED,
    REPLAY_HEADER,
    DeadLetter,
    DeadLetterQueue,
    DlqActionData,
    DlqActions,
)
from projections._leases import (
    LeaseRecord,
    PartitionHolder,
    PartitionLeases,
    read_leases,
    read_members,
)
from projections._message import (
    CHAIN,
    Handler,
    Message,
    Middleware,
    Outcome,
    Output,
    Prepare,
    Result,
)
from projections._metrics import ProjectionMetrics
from projections._partitions import (
    PartitionView,
    consumer_name,
    expected_consumer,
    handled_floor,
    partition_filter,
    partition_views,
    source_partitions,
    undrained_partitions,
)
from projections._runner import ProjectionRunner, RunnerSettings, RunnerState, split_subject
from projections._streams import AUDIT_STREAM, DLQ_STREAM, RUNTIME_STREAMS
from projections.errors import (
    IdleUnconfirmedError,
    LeaseConfigError,
    NotADeadLetterError,
    OriginalUnavailableError,
    ReplayRefusedError,
)

__all__ = [
    "AUDIT_STREAM",
    "CHAIN",
    "DEAD_LETTERED",
    "DLQ_PURGED",
    "DLQ_REPLAYED",
    "DLQ_REPLAY_STARTED",
    "DLQ_STREAM",
    "REPLAY_HEADER",
    "RUNTIME_STREAMS",
    "Checkpoint",
    "CheckpointRecord",
    "DeadLetter",
    "DeadLetterData",
    "DeadLetterQueue",
    "DlqActionData",
    "DlqActions",
    "Handler",
    "IdleUnconfirmedError",
    "LeaseConfigError",
    "LeaseRecord",
    "Message",
    "Middleware",
    "NotADeadLetterError",
    "OriginalUnavailableError",
    "Outcome",
    "Output",
    "PartitionHolder",
    "PartitionLeases",
    "PartitionView",
    "Prepare",
    "ProjectionMetrics",
    "ProjectionRunner",
    "ReplayRefusedError",
    "Result",
    "RunnerSettings",
    "RunnerState",
    "assign",
    "consumer_name",
    "dead_letter",
    "dlq_subject",
    "expected_consumer",
    "handled_floor",
    "partition_filter",
    "partition_views",
    "projection_source",
    "read_checkpoint",
    "read_leases",
    "read_members",
    "source_partitions",
    "split_subject",
    "undrained_partitions",
]
