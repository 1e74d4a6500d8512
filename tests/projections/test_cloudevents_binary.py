"""Raw NATS producers in the CloudEvents NATS binding's binary mode (``ce-`` headers, data payload).

The SDK writes the headers (the binding's percent-encoding is the HTTP
binding's); the test publishes them with raw HPUB as a producer in another
language would. Such evidence is assessed exactly like the structured form,
and the audit replay re-derives its assessment byte for byte; a broken one is
one dead letter naming its attribute, keeping the message as it arrived.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from support.nats import raw_publish
from support.pipeline import read_streams, run_worker

from eventstore import CloudEvent
from projections import DeadLetterQueue
from projections.audit import replay

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

EVIDENCE = "riskpipe.evidence.recorded.v1"
DATA = {"pattern": "failed_login_burst", "severity": "high", "confidence": 0.8}
TIME = datetime(2026, 11, 29, 10, 0, tzinfo=timezone(timedelta(hours=2)))


def _sdk_event(entity: str, event_id: str, **attributes: Any) -> SdkEvent:
    return SdkEvent(
        attributes={"type": EVIDENCE, "source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
                    "id": event_id, "subject": entity, "tenant": "acme", "time": TIME,
                    **attributes},
        data=DATA,
    )  # fmt: skip


def _binary(event: SdkEvent) -> tuple[bytes, bytes]:
    """The NATS header block and payload of ``event`` in binary mode, as the SDK encodes them."""
    message = http.to_binary(event, JSONFormat())
    block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in message.headers.items())
    return block.encode(), message.body


def _scored(assessed: dict[str, Any]) -> dict[str, Any]:
    """An assessment without where its evidence sits: what scoring the evidence gave."""
    return {k: v for k, v in assessed["assessment"].items() if k != "sequence"}


async def test_binary_mode_evidence_is_assessed_like_its_structured_form(
    nats_server: NatsServer, store: EventStore
) -> None:
    """The same evidence, binary on one entity and structured on another: equal assessments."""
    binary = _sdk_event("b1", "ev-1", partitionkey="p%1 ü", datacontenttype="application/json")
    block, payload = _binary(binary)
    assert b"content-type: application/json" in block
    await raw_publish(nats_server.url, "rp.evidence.acme.b1", block, payload)
    structured = JSONFormat().write(_sdk_event("s1", "ev-1", partitionkey="p%1 ü"))
    await store.append(store.schemas.parse(structured))

    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 2}
    streams = await read_streams(store)
    stored = streams.evidence[1]  # the binary-mode message, decoded as every reader does
    assert isinstance(stored, CloudEvent)
    assert stored.extensions == {"partitionkey": "p%1 ü"}
    assert stored.time == TIME
    (b_assessed,), (s_assessed,) = streams.assessments[1], streams.assessments[2]
    assert b_assessed["evidence"]["sequence"] == 1
    assert s_assessed["evidence"]["sequence"] == 2
    assert _scored(b_assessed) == _scored(s_assessed)
    assert b_assessed["evidence"]["id"] == s_assessed["evidence"]["id"] == "ev-1"

    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.identical == 2


async def test_binary_mode_v2_evidence_is_assessed_with_its_impact(
    nats_server: NatsServer, store: EventStore
) -> None:
    """``ce-type`` v2: validated as v2, scored with its impact, verified by the replay."""
    v2 = SdkEvent(
        attributes={"type": "riskpipe.evidence.recorded.v2", "source": "edr", "id": "ev-2",
                    "subject": "b2", "tenant": "acme", "time": TIME},
        data={**DATA, "impact": 0.5, "attributes": {"host": {"os": "linux"}}},
    )  # fmt: skip
    block, payload = _binary(v2)
    await raw_publish(nats_server.url, "rp.evidence.acme.b2", block, payload)
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 1}
    streams = await read_streams(store)
    ((assessed,),) = streams.assessments.values()
    assert assessed["assessment"]["contributions"]["impact_amplification"] > 0
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.identical == 1


@pytest.mark.parametrize(
    ("drop", "added", "named"),
    [
        (b"ce-id", b"", "ce-id: Field required"),
        (b"", b"CE-Id: other\r\n", "ce-id: header given more than once"),
        (b"", b"ce-data: %7B%7D\r\n", "ce-data: the data is the message payload, not a header"),
        (b"", b"ce-abcdefghijklmnopqrstu: v\r\n", "invalid extension attribute name"),
        (b"", b"ce-partitionkey: " + b"p" * 5000 + b"\r\n", "ce-partitionkey: an extension"),
        (b"", b"ce-dataschema: not%20a%20uri\r\n", "ce-dataschema: invalid dataschema"),
        (b"", b"ce-x1: %C0%A0\r\n", "ce-x1: not UTF-8 once percent-decoded"),
    ],
    ids=["missing-id", "twice", "reserved-data", "long-name", "huge-value", "not-uri", "overlong"],
)
async def test_broken_binary_mode_evidence_is_one_dead_letter_naming_the_attribute(
    nats_server: NatsServer, store: EventStore, drop: bytes, added: bytes, named: str
) -> None:
    """Each broken message is dead-lettered whole (headers as sent), its entity goes on."""
    block, payload = _binary(_sdk_event("e1", "bad"))
    lines = block.splitlines(keepends=True)
    block = b"".join(line for line in lines if not drop or not line.startswith(drop)) + added
    await raw_publish(nats_server.url, "rp.evidence.acme.e1", block, payload)
    good_block, good_payload = _binary(_sdk_event("e1", "good"))
    await raw_publish(nats_server.url, "rp.evidence.acme.e1", good_block, good_payload)

    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"dead_lettered": 1, "assessed": 1}
    (letter,) = await DeadLetterQueue(store, "risk").list()
    assert named in letter.data.error_message, letter.data.error_message
    assert letter.data.original_bytes() == payload
    assert letter.data.header_block() == block + b"\r\n"  # as sent: raw_publish ends the block
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.dead_lettered == 1
