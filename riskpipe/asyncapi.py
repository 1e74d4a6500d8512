"""riskpipe's event channels as an AsyncAPI 3.0 document (``riskpipe asyncapi``).

The message schemas are the JSON Schemas ``riskpipe schema`` prints, with
their shared definitions moved to ``components/schemas`` so that references
resolve inside one document. Who may send or receive on a channel follows
``deploy/nats/auth.conf`` (``x-riskpipe-roles`` on each operation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventstore import Category, EventSchemas, StoreConfig

__all__ = ["CHANNELS", "Channel", "asyncapi_document"]

_PARAMETERS = {
    "tenant": "The tenant that owns the entity (a subject token).",
    "entity": "The entity the events are about: the envelope's `subject` (a subject token).",
    "projection": "The projection that dead-lettered the evidence, e.g. `risk`.",
    "deadLetterSequence": "The dead letter's sequence in the DLQ stream.",
    "version": "A proposed analyzer config's version name (a subject token).",
}


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel: where its events live, what they are, and which roles use it."""

    key: str
    address: str
    """The subject, after the prefix, with ``{parameters}``."""
    category: Category
    """The event category, hence the stream, that stores the channel."""
    messages: tuple[str, ...]
    description: str
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    headers: tuple[str, ...] = ()


CHANNELS = (
    Channel(
        "evidence", "evidence.{tenant}.{entity}", "evidence",
        ("riskpipe.evidence.recorded.v1", "riskpipe.evidence.recorded.v2"),
        "Evidence producers record about an entity; stored once per (source, id). Either"
        " version may be sent; readers see v1 as v2 (no impact, the same attributes).",
        senders=("producer", "admin"), receivers=("worker", "auditor"),
        headers=("Riskpipe-Replay-Of",),
    ),
    Channel(
        "risk", "risk.{tenant}.{entity}", "risk",
        ("riskpipe.risk.assessed.v1",),
        "The entity's assessments, one per evidence, each fenced on the one before.",
        senders=("worker",), receivers=("worker", "auditor"),
        headers=("Nats-Expected-Last-Subject-Sequence",),
    ),
    Channel(
        "deadLetters", "dlq.{projection}.{tenant}.{entity}", "dlq",
        ("riskpipe.dlq.deadlettered.v1",),
        "Evidence a projection could not handle, with the error and the original bytes.",
        senders=("worker",), receivers=("worker", "auditor", "admin"),
    ),
    Channel(
        "audit", "audit.{tenant}.{entity}", "audit",
        ("riskpipe.dlq.purged.v1",),
        "Operators' actions on an entity's dead letters: who purged which, and why.",
        senders=("admin",), receivers=("auditor", "admin"),
    ),
    Channel(
        "deadLetterReplays", "audit.{tenant}.{entity}.replay.{projection}.{deadLetterSequence}",
        "audit",
        ("riskpipe.dlq.replay_started.v1", "riskpipe.dlq.replayed.v1"),
        "The claim and the record of one dead letter's replay, fenced so it happens once.",
        senders=("admin",), receivers=("auditor", "admin"),
        headers=("Nats-Expected-Last-Subject-Sequence",),
    ),
    Channel(
        "review", "review.{tenant}.{entity}", "review",
        ("riskpipe.review.opened.v1", "riskpipe.review.assigned.v1",
         "riskpipe.review.commented.v1", "riskpipe.review.decided.v1",
         "riskpipe.review.reopened.v1"),
        "The entity's review cases: opened by the review projection, decided by people,"
        " each event fenced on the one before.",
        senders=("worker", "admin"), receivers=("worker", "auditor", "admin"),
        headers=("Nats-Expected-Last-Subject-Sequence",),
    ),
    Channel(
        "outcomes", "outcome.{tenant}.{entity}", "outcome",
        ("riskpipe.outcome.recorded.v1",),
        "Ground truth about an entity (fraud confirmed, a chargeback, benign): what the"
        " learning loop compares assessments with; stored once per (source, id).",
        senders=("producer", "admin"), receivers=("auditor", "admin"),
    ),
    Channel(
        "analyzerConfigs", "config.riskpipe.risk", "config",
        (
            "riskpipe.analyzer.config.proposed.v1",
            "riskpipe.analyzer.config.promotion_started.v1",
            "riskpipe.analyzer.config.promoted.v1",
        ),
        "Analyzer configs proposed (learned or written by hand) and promoted, with the"
        " evidence sequence from which each promotion scores; fenced, so one promotion wins."
        " A promotion is started, then recorded: workers wait for a started one.",
        senders=("admin",), receivers=("worker", "auditor", "admin"),
        headers=("Nats-Expected-Last-Subject-Sequence",),
    ),
    Channel(
        "shadowAssessments", "shadow.{version}.{tenant}.{entity}", "shadow",
        ("riskpipe.risk.shadow_assessed.v1",),
        "A shadow run's assessments: a proposed config version scoring the live evidence,"
        " one per evidence, each fenced on the one before; never live (no review cases).",
        senders=("worker",), receivers=("worker", "auditor", "admin"),
        headers=("Nats-Expected-Last-Subject-Sequence",),
    ),
)  # fmt: skip

_HEADERS: dict[str, dict[str, Any]] = {
    "Nats-Msg-Id": {
        "type": "string",
        "description": "The idempotency key: `<length of source>:<source>:<id>`.",
    },
    "traceparent": {
        "type": "string",
        "description": "W3C trace context of the span that sent the event, when tracing is on.",
    },
    "tracestate": {"type": "string", "description": "W3C trace state, with `traceparent`."},
    "Nats-Expected-Last-Subject-Sequence": {
        "type": "string",
        "description": "The concurrency fence: the subject's last sequence the writer saw.",
    },
    "Riskpipe-Replay-Of": {
        "type": "string",
        "description": "On evidence re-sent from the dead-letter queue: the letter's sequence.",
    },
}


def asyncapi_document(schemas: EventSchemas, config: StoreConfig) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every channel, message and role."""
    components: dict[str, Any] = {"schemas": {}, "messages": {}, "parameters": {}}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in CHANNELS:
        for name in channel.messages:
            message = _message(schemas, name, channel.headers, components["schemas"])
            components["messages"][_message_key(name)] = message
        channels[channel.key] = _channel(channel, config)
        operations |= _operations(channel)
    components["parameters"] = {name: {"description": text} for name, text in _PARAMETERS.items()}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "riskpipe",
            "version": version("riskpipe"),
            "description": (
                "Evidence events in, risk assessments out, dead letters and audit records"
                " beside them, on NATS JetStream. Each event is a CloudEvents 1.0 JSON object."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The server `riskpipe server` runs; see docs/security.md.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _channel(channel: Channel, config: StoreConfig) -> dict[str, Any]:
    parameters = [part[1:-1] for part in channel.address.split(".") if part.startswith("{")]
    return {
        "address": f"{config.prefix}.{channel.address}",
        "description": f"{channel.description} Stream `{config.stream_for(channel.category)}`.",
        "parameters": {name: {"$ref": f"#/components/parameters/{name}"} for name in parameters},
        "messages": {
            _message_key(name): {"$ref": f"#/components/messages/{_message_key(name)}"}
            for name in channel.messages
        },
    }


def _operations(channel: Channel) -> dict[str, Any]:
    out = {}
    for action, roles in (("send", channel.senders), ("receive", channel.receivers)):
        out[f"{channel.key}.{action}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel.key}"},
            "summary": f"{'Publish to' if action == 'send' else 'Read'} {channel.key}: "
            + ", ".join(roles),
            "x-riskpipe-roles": list(roles),
        }
    return out


def _message(
    schemas: EventSchemas, name: str, extra_headers: tuple[str, ...], shared: dict[str, Any]
) -> dict[str, Any]:
    payload = schemas.event_json_schema(name)
    payload.pop("$schema", None)
    for key, definition in payload.pop("$defs", {}).items():
        shared[key] = _hoisted(definition)
    headers = {h: _HEADERS[h] for h in ("Nats-Msg-Id", "traceparent", "tracestate", *extra_headers)}
    return {
        "name": name,
        "title": name,
        "contentType": "application/json",
        "headers": {"type": "object", "properties": headers, "required": ["Nats-Msg-Id"]},
        "payload": _hoisted(payload),
    }


def _hoisted(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``#/$defs/`` references pointing at ``components/schemas``."""
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/')
    hoisted: dict[str, Any] = json.loads(text)
    return hoisted


def _message_key(name: str) -> str:
    return name.removeprefix("riskpipe.").replace(".", "_")
