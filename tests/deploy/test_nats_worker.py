"""The worker on deploy/nats/accounts.conf: evidence in, assessments and dead letters out."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from nats_sessions import create_risk_consumer, stored

from eventstore._jetstream._client import JetStreamClient
from eventstore._jetstream._reader import read_range
from riskpipe.topology import topology_config

STORED = topology_config().stored
"""Evidence as the store keeps it: the server adds the partition (default 16)."""


if TYPE_CHECKING:
    from nats_sessions import Session, Sessions

_DURABLE_NAME_NOT_SUBJECT = 10017


@pytest.mark.parametrize(
    ("subject", "stream"), [("rp.evidence.t1.e1", "EVIDENCE"), ("rp.audit.t1.e1", "AUDIT")]
)
async def test_worker_cannot_publish_evidence_or_audit_records(
    admin: Session, worker: Session, subject: str, stream: str
) -> None:
    """Evidence and audit records from the worker are refused and not stored."""
    await worker.refused(subject, worker.js.publish(subject, b"{}"))
    assert await stored(admin, stream) == 0


async def test_worker_publishes_assessments_and_dead_letters(worker: Session) -> None:
    """The worker's assessment (with its OCC header) and dead letter are both acknowledged."""
    first = {"Nats-Msg-Id": "risk:1", "Nats-Expected-Last-Subject-Sequence": "0"}
    assessment = await worker.js.publish("rp.risk.t1.e1", b"{}", headers=first)
    dead_letter = await worker.js.publish("rp.dlq.risk.t1.e1", b"{}")
    assert (assessment.stream, dead_letter.stream) == ("RISK", "DLQ")


async def test_worker_reads_its_dead_letters(worker: Session) -> None:
    """A direct get of the first dead letter under a subject filter works for the worker."""
    await worker.js.publish("rp.dlq.risk.t1.e1", b"dead")
    request = json.dumps({"seq": 1, "next_by_subj": "rp.dlq.risk.>"}).encode()
    first = await worker.nc.request("$JS.API.DIRECT.GET.DLQ", request, timeout=3)
    assert first.data == b"dead"
    assert (first.headers or {}).get("Nats-Sequence") == "1"


async def test_worker_reads_the_last_assessment_of_an_entity(worker: Session) -> None:
    """A direct get by subject returns the entity's latest assessment to the worker."""
    await worker.js.publish("rp.risk.t1.e1", b"old")
    await worker.js.publish("rp.risk.t1.e1", b"new")
    last = await worker.js.get_last_msg("RISK", "rp.risk.t1.e1", direct=True)
    assert (last.data, last.seq) == (b"new", 2)
    assert (await worker.js.get_msg("RISK", seq=1, direct=True)).data == b"old"


async def test_worker_consumes_evidence_through_its_durable_consumer(
    producer: Session, worker: Session
) -> None:
    """The worker creates ``risk-0``, fetches evidence and acks it; the ack floor moves."""
    subject = next(
        f"rp.evidence.t1.e{n}"
        for n in range(99)
        if STORED(f"rp.evidence.t1.e{n}").startswith("rp.evidence.0.")
    )
    await producer.js.publish(subject, b"{}")
    direct = await worker.js.get_last_msg("EVIDENCE", STORED(subject), direct=True)
    assert direct.data == (await worker.js.get_msg("EVIDENCE", seq=1, direct=True)).data == b"{}"
    await create_risk_consumer(worker)
    sub = await worker.js.pull_subscribe_bind("risk-0", stream="EVIDENCE")
    [msg] = await sub.fetch(1, timeout=3)
    await msg.ack_sync(timeout=3)
    info = await worker.js.consumer_info("EVIDENCE", "risk-0")
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (1, 0)


async def test_worker_reads_and_writes_its_buckets(worker: Session) -> None:
    """The worker puts, compare-and-sets and reads rp-checkpoints and rp-leases."""
    checkpoints = await worker.js.key_value("rp-checkpoints")
    revision = await checkpoints.put("risk-0", b"1")
    assert await checkpoints.update("risk-0", b"2", last=revision) == revision + 1
    assert (await checkpoints.get("risk-0")).value == b"2"
    leases = await worker.js.key_value("rp-leases")
    assert await leases.create("risk.0", b"worker-a") == 1
    raw = await worker.nc.request(
        "$JS.API.DIRECT.GET.KV_rp-leases.$KV.rp-leases.risk.0", b"", timeout=3
    )
    assert raw.data == b"worker-a"


async def test_worker_cannot_erase_streams_or_buckets(admin: Session, worker: Session) -> None:
    """Purging or deleting any stream or bucket, or writing other buckets, is refused."""
    await worker.js.publish("rp.dlq.risk.t1.e1", b"{}")
    for subject, body in [
        ("$JS.API.STREAM.PURGE.DLQ", None),
        ("$JS.API.STREAM.PURGE.RISK", None),
        ("$JS.API.STREAM.MSG.DELETE.DLQ", {"seq": 1}),
        ("$JS.API.STREAM.PURGE.KV_rp-checkpoints", None),
        ("$JS.API.STREAM.DELETE.KV_rp-leases", None),
        ("$KV.rp-other.key", None),
    ]:
        await worker.refused(subject, worker.request(subject, body))
    assert await stored(admin, "DLQ") == 1


@pytest.mark.parametrize("user", ["producer", "auditor"])
async def test_only_the_worker_drives_its_durable_consumer(
    admin: Session, sessions: Sessions, user: str
) -> None:
    """Others cannot redefine, drain or delete the ``risk-0`` consumer; it stays as created."""
    await create_risk_consumer(admin)
    other = await sessions.open(user)
    narrowed = {
        "durable_name": "risk-0",
        "ack_policy": "explicit",
        "filter_subject": "rp.evidence.x.>",
    }
    for subject, body in [
        (
            "$JS.API.CONSUMER.CREATE.EVIDENCE.risk-0",
            {"stream_name": "EVIDENCE", "config": narrowed},
        ),
        ("$JS.API.CONSUMER.MSG.NEXT.EVIDENCE.risk-0", {"batch": 1}),
        ("$JS.API.CONSUMER.DELETE.EVIDENCE.risk-0", None),
    ]:
        await other.refused(subject, other.request(subject, body))
    info = await admin.js.consumer_info("EVIDENCE", "risk-0")
    assert info.config.filter_subject == "rp.evidence.0.>"


# -- the body of a consumer create cannot pick the worker's consumer -----------

_HIJACKS = {
    "by name": {"name": "risk-0"},
    "by durable name": {"name": "risk-0", "durable_name": "risk-0"},
}


@pytest.mark.parametrize("body", _HIJACKS.values(), ids=_HIJACKS.keys())
@pytest.mark.parametrize("user", ["producer", "auditor"])
async def test_a_bare_create_naming_risk_is_refused(
    admin: Session, sessions: Sessions, user: str, body: dict[str, str]
) -> None:
    """The create without a name in its subject, naming ``risk-0`` in its body, is refused.

    Allowed, it would redefine the worker's consumer: headers only, and a filter
    that matches nothing.
    """
    await create_risk_consumer(admin)
    other = await sessions.open(user)
    hijack = {
        **body,
        "ack_policy": "explicit",
        "filter_subject": "rp.evidence.nobody.>",
        "headers_only": True,
    }
    subject = "$JS.API.CONSUMER.CREATE.EVIDENCE"
    await other.refused(
        subject, other.request(subject, {"stream_name": "EVIDENCE", "config": hijack})
    )
    info = await admin.js.consumer_info("EVIDENCE", "risk-0")
    assert info.config.filter_subject == "rp.evidence.0.>"
    assert not info.config.headers_only


async def test_a_named_create_cannot_name_another_consumer_in_its_body(
    admin: Session, auditor: Session
) -> None:
    """The server takes a named create's consumer from its subject, whatever the body says.

    A differing ``durable_name`` is refused (10017), a differing ``name`` is
    ignored: so denying ``CONSUMER.CREATE.EVIDENCE.risk-0`` is enough to keep
    ``risk-0`` the worker's.
    """
    await create_risk_consumer(admin)
    hijack = {"ack_policy": "explicit", "filter_subject": "rp.evidence.nobody.>"}
    refused = await auditor.api(
        "CONSUMER.CREATE.EVIDENCE.rd_0000000000000001",
        {"stream_name": "EVIDENCE", "config": {**hijack, "durable_name": "risk-0"}},
    )
    assert refused["error"]["err_code"] == _DURABLE_NAME_NOT_SUBJECT
    renamed = await auditor.api(
        "CONSUMER.CREATE.EVIDENCE.rd_0000000000000002",
        {"stream_name": "EVIDENCE", "config": {**hijack, "name": "risk-0", "ack_policy": "none"}},
    )
    assert renamed["name"] == "rd_0000000000000002", renamed
    info = await admin.js.consumer_info("EVIDENCE", "risk-0")
    assert info.config.filter_subject == "rp.evidence.0.>"


async def test_readers_create_named_consumers_that_vanish(
    sessions: Sessions, producer: Session
) -> None:
    """The store's reader works for the auditor, by a named consumer it deletes after."""
    await producer.js.publish("rp.evidence.t1.e1", b"{}")
    reader = await sessions.open("auditor")
    client = await JetStreamClient.from_nats(reader.nc)
    try:
        read = [raw.seq async for raw in read_range(
            client, "EVIDENCE", filter_subject=STORED("rp.evidence.t1.e1"), start_seq=1, end_seq=1
        )]  # fmt: skip
    finally:
        await client.close()
    assert read == [1]
    assert (await reader.api("CONSUMER.NAMES.EVIDENCE"))["consumers"] == []
