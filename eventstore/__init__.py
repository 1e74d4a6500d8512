"""An idempotent event store on NATS JetStream. Knows events, not risk.

Appends are idempotent per ``(source, id)``, optimistically concurrent per
entity, and atomic in batches; reads are ordered. Every error is an
:class:`~eventstore.errors.EventStoreError`.
"""

from eventstore import errors
from eventstore._append import (
    ANY,
    MAX_BATCH,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    resent_headers,
    sendable_headers,
)
from eventstore._codec import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    decode_json,
    encode_event,
    encode_json,
)
from eventstore._copy import Copy, copy_of
from eventstore._envelope import CloudEvent, msg_id_for
from eventstore._jetstream._client import RawMessage, redact
from eventstore._jetstream._consumer import ConsumerSettings, Delivery, DurableConsumer
from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._transport import HeaderBlock, OutboundMessage
from eventstore._kv import KeyValue, KVEntry
from eventstore._options import DEFAULT_INBOX_PREFIX, ConnectOptions, check_inbox_prefix
from eventstore._provision import ProvisionReport, recorded_partitions
from eventstore._recorded import RecordedEvent
from eventstore._schemas import EventSchemas, EventType, Upcaster
from eventstore._store import EventStore, PendingAppend
from eventstore._telemetry import StoreMetrics, tracing_enabled
from eventstore._tokens import RFC3339, SUBJECT_TOKEN, EventId, SourceRef, Token, validate_token
from eventstore._topology import (
    MAX_PARTITIONS,
    PARTITIONS_KEY,
    Category,
    StoreConfig,
    StreamSpec,
    partition_of,
)

__all__ = [
    "ANY",
    "DEFAULT_INBOX_PREFIX",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "MAX_BATCH",
    "MAX_PARTITIONS",
    "NO_STREAM",
    "PARTITIONS_KEY",
    "RFC3339",
    "SUBJECT_TOKEN",
    "AppendResult",
    "Category",
    "CloudEvent",
    "ConnectOptions",
    "ConsumerSettings",
    "Copy",
    "Delivery",
    "DurableConsumer",
    "EventId",
    "EventSchemas",
    "EventStore",
    "EventType",
    "ExpectedVersion",
    "HeaderBlock",
    "KVEntry",
    "KeyValue",
    "OutboundMessage",
    "PendingAppend",
    "ProvisionReport",
    "RawMessage",
    "RecordedEvent",
    "SourceRef",
    "StoreConfig",
    "StoreMetrics",
    "StreamSpec",
    "Token",
    "Upcaster",
    "check_inbox_prefix",
    "copy_of",
    "decode_json",
    "encode_event",
    "encode_json",
    "errors",
    "msg_id_for",
    "parse_headers",
    "partition_of",
    "recorded_partitions",
    "redact",
    "resent_headers",
    "sendable_headers",
    "tracing_enabled",
    "validate_token",
]
