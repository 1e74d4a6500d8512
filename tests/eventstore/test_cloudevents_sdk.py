"""Events written with the official CloudEvents SDK (structured JSON mode) go through publish.

Extension attributes and ``dataschema`` are stored, kept byte for byte as
canonical JSON, assessed by the worker and verified by the audit replay;
hostile attributes are each refused on their own line, naming the attribute.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from support.cli import riskpipe

from eventstore import EventStore, encode_event
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

EVIDENCE = "riskpipe.evidence.recorded.v1"


def _sdk_line(**attributes: Any) -> str:
    """One JSON line as the SDK writes it: its own id and time unless given."""
    event = SdkEvent(
        attributes={"type": EVIDENCE, "source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
                    "subject": "u1", "tenant": "t1", **attributes},
        data={"pattern": "failed_login_burst", "severity": "high"},
    )  # fmt: skip
    return JSONFormat().write(event).decode()


def _edited(line: str, **changes: Any) -> str:
    """``line`` with top-level members set: what the SDK would refuse to write itself."""
    return json.dumps({**json.loads(line), **changes})


GOOD = [
    _sdk_line(),
    _sdk_line(time=datetime(2026, 11, 29, 10, 0, tzinfo=timezone(timedelta(hours=2)))),
    _sdk_line(
        id="with-extensions",
        dataschema="https://example.com/schemas/evidence.json",
        datacontenttype="application/json",
        partitionkey="tenant-t1",
        correlationid="req-7",
        sampled=True,
        priority=3,
    ),
]

HOSTILE = {
    "too many": _edited(GOOD[0], id="h1", **{f"x{i}": "v" for i in range(17)}),
    "over-long name": _edited(GOOD[0], id="h2", abcdefghijklmnopqrstu="v"),
    "upper-case name": _edited(GOOD[0], id="h3", PartitionKey="v"),
    "reserved name": _edited(GOOD[0], id="h4", data_base64="AAAA"),
    "huge value": _edited(GOOD[0], id="h5", partitionkey="p" * 10_000),
    "not a uri": _edited(GOOD[0], id="h6", dataschema="not a uri"),
    "not json data": _edited(GOOD[0], id="h7", datacontenttype="text/plain"),
}
EXPECTED = {
    "too many": "event: 17 extension attributes, at most 16 are kept (the first one too many:"
    " 'x16')",
    "over-long name": "invalid extension attribute name 'abcdefghijklmnopqrstu'",
    "upper-case name": "invalid extension attribute name 'PartitionKey'",
    "reserved name": "data_base64: binary data is refused",
    "huge value": "partitionkey: an extension value has at most 256 characters, not 10000",
    "not a uri": "dataschema: invalid dataschema 'not a uri': use an absolute URI",
    "not json data": "datacontenttype: invalid datacontenttype 'text/plain'",
}


def test_sdk_events_are_stored_with_their_attributes_assessed_and_verified(
    nats_server: NatsServer,
) -> None:
    """SDK defaults, an offset time, dataschema and extensions: stored, scored, replayed."""
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", env=env).returncode == 0
    published = riskpipe("publish", "-", env=env, stdin="\n".join(GOOD) + "\n")
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == "stored=3 duplicates=0 rejected=0"
    shown = riskpipe("events", "--tenant", "t1", "--entity", "u1", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line)["event"] for line in shown.stdout.splitlines()]
    rich = next(e for e in events if e["id"] == "with-extensions")
    assert rich["dataschema"] == "https://example.com/schemas/evidence.json"
    assert (rich["partitionkey"], rich["correlationid"]) == ("tenant-t1", "req-7")
    assert (rich["sampled"], rich["priority"]) == (True, 3)
    assert events[1]["time"] == "2026-11-29T08:00:00Z"
    assert riskpipe("worker", "--until-idle", "--no-http", env=env).returncode == 0
    replayed = riskpipe("replay", env=env)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


async def test_stored_extensions_are_canonical_bytes_every_reader_keeps(
    nats_server: NatsServer,
) -> None:
    """Re-encoding what a reader decodes gives the stored bytes back, extensions included."""
    assert riskpipe("init", env={"RISKPIPE_NATS_URL": nats_server.url}).returncode == 0
    schemas = build_schemas()
    async with await EventStore.connect(
        nats_server.url, schemas=schemas, config=topology_config()
    ) as store:
        stored = await store.append(schemas.parse(GOOD[2].encode()))
        raw = await store.last_message(stored.subject)
        assert raw is not None
        event, data = store.schemas.decode(raw.data, upcast=False)
        assert event.extensions == {"partitionkey": "tenant-t1", "sampled": True, "priority": 3}
        assert encode_event(event, data) == raw.data
        assert b'"partitionkey":"tenant-t1"' in raw.data
        latest, upcast = store.decoded(raw)  # v1, read as v2: the extensions are kept
        assert latest.type == "riskpipe.evidence.recorded.v2"
        assert latest.extensions == event.extensions
        assert encode_event(latest, upcast) == raw.data.replace(b".v1", b".v2")


def test_hostile_attributes_are_refused_line_by_line_naming_the_attribute(
    nats_server: NatsServer,
) -> None:
    """Each hostile line has its own error; the good lines around them are stored."""
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", env=env).returncode == 0
    lines = [GOOD[2], *HOSTILE.values(), GOOD[0]]
    published = riskpipe("publish", "-", env=env, stdin="\n".join(lines) + "\n")
    assert published.returncode == 1
    assert published.stdout.strip() == f"stored=2 duplicates=0 rejected={len(HOSTILE)}"
    errors = [line for line in published.stderr.splitlines() if line.startswith("line ")]
    assert len(errors) == len(HOSTILE)
    for n, (name, error) in enumerate(zip(HOSTILE, errors, strict=True), start=2):
        assert error.startswith(f"line {n}: "), error
        assert EXPECTED[name] in error, (name, error)
        assert len(error) < 400, "one short line, not the value echoed back"


def test_the_sdk_time_default_is_an_aware_utc_time() -> None:
    """The SDK's own default time (now, UTC) is a time the store takes as it is."""
    event = build_schemas().parse(_sdk_line().encode())
    assert event.time.tzinfo is not None
    assert event.time.utcoffset() == timedelta(0)
    assert event.time <= datetime.now(UTC)
