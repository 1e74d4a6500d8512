"""The auditor and the admin on deploy/nats/accounts.conf: read-only, and immutable streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js.api import AckPolicy, ConsumerConfig
from nats_sessions import stored

from riskpipe.topology import topology_config

STORED = topology_config().stored
"""Evidence as the store keeps it: the server adds the partition (default 16)."""


if TYPE_CHECKING:
    from nats_sessions import Session


async def test_auditor_reads_every_stream(
    producer: Session, worker: Session, auditor: Session
) -> None:
    """Stream info, names, direct and message gets and ephemeral fetches work for the auditor."""
    await producer.js.publish("rp.evidence.t1.e1", b"evidence")
    await worker.js.publish("rp.risk.t1.e1", b"assessment")
    await worker.js.publish("rp.dlq.risk.t1.e1", b"dead")
    names = await auditor.api("STREAM.NAMES")
    assert {"EVIDENCE", "RISK", "DLQ", "AUDIT"} <= set(names["streams"])
    assert (await auditor.js.stream_info("RISK")).state.messages == 1
    evidence = await auditor.js.get_last_msg("EVIDENCE", STORED("rp.evidence.t1.e1"), direct=True)
    assert evidence.data == b"evidence"
    assert (await auditor.js.get_msg("DLQ", seq=1)).data == b"dead"
    sub = await auditor.js.pull_subscribe(
        "rp.risk.>", stream="RISK", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    assert [msg.data for msg in await sub.fetch(1, timeout=3)] == [b"assessment"]
    assert (await auditor.js.consumer_info("RISK", sub._consumer)).num_pending == 0  # noqa: SLF001


async def test_auditor_cannot_publish_or_erase(admin: Session, auditor: Session) -> None:
    """The auditor cannot publish under rp.>, write buckets, or purge and delete anything."""
    for subject in ("rp.audit.t1.e1", "rp.evidence.t1.e1", "rp.risk.t1.e1", "$KV.rp-leases.k"):
        await auditor.refused(subject, auditor.js.publish(subject, b"{}"))
    for subject, body in [
        ("$JS.API.STREAM.PURGE.AUDIT", None),
        ("$JS.API.STREAM.PURGE.DLQ", None),
        ("$JS.API.STREAM.MSG.DELETE.DLQ", {"seq": 1}),
        ("$JS.API.STREAM.DELETE.RISK", None),
    ]:
        await auditor.refused(subject, auditor.request(subject, body))
    for stream in ("AUDIT", "EVIDENCE", "RISK", "KV_rp-leases"):
        assert await stored(admin, stream) == 0


# -- admin --------------------------------------------------------------------


async def test_admin_deletes_dead_letters_but_evidence_is_immutable(admin: Session) -> None:
    """Even the admin cannot purge evidence or audit records; single dead letters it may delete."""
    await admin.js.publish("rp.evidence.t1.e1", b"{}")
    await admin.js.publish("rp.dlq.risk.t1.e1", b"{}")
    assert "error" not in await admin.api("STREAM.MSG.DELETE.DLQ", {"seq": 1})
    for subject, body in [
        ("STREAM.MSG.DELETE.EVIDENCE", {"seq": 1}),
        ("STREAM.PURGE.EVIDENCE", None),
        ("STREAM.PURGE.AUDIT", None),
    ]:
        assert "error" in await admin.api(subject, body), subject
    assert await stored(admin, "EVIDENCE") == 1
