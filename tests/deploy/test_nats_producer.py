"""The producer on deploy/nats/accounts.conf: it appends and reads evidence, nothing more."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import nats.aio.client
import nats.errors
import nats.js.errors
import pytest
from nats_sessions import inbox_prefix, stored
from support.cli import riskpipe
from support.events import evidence_line

from riskpipe.topology import topology_config

STORED = topology_config().stored
"""Evidence as the store keeps it: the server adds the partition (default 16)."""


if TYPE_CHECKING:
    from nats_sessions import Session

    from riskpipe.server import NatsServer

_ROLLUP_NOT_PERMITTED = 10111
_MSG_TTL_DISABLED = 10166


@pytest.mark.parametrize(("user", "password"), [(None, None), ("producer", "wrong-password")])
async def test_unknown_clients_are_refused(
    secured_server: NatsServer, user: str | None, password: str | None
) -> None:
    """A client without credentials, or with a wrong password, cannot connect."""
    nc = nats.aio.client.Client()

    async def quiet(_exc: Exception) -> None:
        """The refusal is raised by ``connect``."""

    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            async with asyncio.timeout(5):
                await nc.connect(
                    secured_server.url,
                    user=user,
                    password=password,
                    allow_reconnect=False,
                    error_cb=quiet,
                )
    finally:
        await nc.close()  # nats-py leaves the socket of a refused connection open


async def test_producer_appends_evidence(producer: Session) -> None:
    """The producer's evidence is stored in EVIDENCE and acknowledged with a PubAck."""
    ack = await producer.js.publish("rp.evidence.t1.e1", b"{}", headers={"Nats-Msg-Id": "src:1"})
    assert (ack.stream, ack.seq) == ("EVIDENCE", 1)


@pytest.mark.parametrize(
    ("subject", "stream"),
    [("rp.risk.t1.e1", "RISK"), ("rp.dlq.risk.t1.e1", "DLQ"), ("rp.audit.t1.e1", "AUDIT")],
)
async def test_producer_cannot_publish_outside_evidence(
    admin: Session, producer: Session, subject: str, stream: str
) -> None:
    """Assessments, dead letters and audit records from the producer are refused, not stored."""
    await producer.refused(subject, producer.js.publish(subject, b"{}"))
    assert await stored(admin, stream) == 0


async def test_producer_cannot_erase_or_rewrite_evidence(admin: Session, producer: Session) -> None:
    """Purging, deleting or reconfiguring EVIDENCE, or deleting a message, is refused."""
    await producer.js.publish("rp.evidence.t1.e1", b"{}")
    loosened = {"name": "EVIDENCE", "subjects": ["rp.evidence.>"], "allow_rollup_hdrs": True}
    for subject, body in [
        ("$JS.API.STREAM.PURGE.EVIDENCE", None),
        ("$JS.API.STREAM.DELETE.EVIDENCE", None),
        ("$JS.API.STREAM.MSG.DELETE.EVIDENCE", {"seq": 1}),
        ("$JS.API.STREAM.UPDATE.EVIDENCE", loosened),
    ]:
        await producer.refused(subject, producer.request(subject, body))
    assert await stored(admin, "EVIDENCE") == 1
    assert not (await admin.js.stream_info("EVIDENCE")).config.allow_rollup_hdrs


async def test_producer_reads_back_the_last_evidence_of_an_entity(producer: Session) -> None:
    """The stream lookup and the direct get by subject (after a lost PubAck) work for it."""
    await producer.js.publish("rp.evidence.t1.e1", b'{"n":1}')
    assert (await producer.js.stream_info("EVIDENCE")).state.messages == 1
    direct = await producer.js.get_last_msg("EVIDENCE", STORED("rp.evidence.t1.e1"), direct=True)
    assert (direct.data, direct.seq) == (b'{"n":1}', 1)


async def test_producer_cannot_listen_on_stream_subjects(producer: Session) -> None:
    """A core subscription to rp.> (assessments in flight) is refused to the producer."""
    await producer.subscription_refused("rp.>")


# -- headers an attacker may inject -------------------------------------------


@pytest.mark.parametrize("rollup", ["all", "sub"])
async def test_evidence_ignores_an_injected_rollup(
    admin: Session, producer: Session, rollup: str
) -> None:
    """A ``Nats-Rollup`` header is rejected by EVIDENCE and earlier evidence survives."""
    await producer.js.publish("rp.evidence.t1.e1", b"first")
    await producer.js.publish("rp.evidence.t1.e2", b"other")
    with pytest.raises(nats.js.errors.APIError) as raised:
        await producer.js.publish("rp.evidence.t1.e1", b"erase", headers={"Nats-Rollup": rollup})
    assert raised.value.err_code == _ROLLUP_NOT_PERMITTED
    assert await stored(admin, "EVIDENCE") == 2
    assert (await admin.js.get_msg("EVIDENCE", seq=1)).data == b"first"


async def test_evidence_ignores_an_injected_ttl(admin: Session, producer: Session) -> None:
    """A ``Nats-TTL`` header is rejected by EVIDENCE, so evidence cannot be made to expire."""
    with pytest.raises(nats.js.errors.APIError) as raised:
        await producer.js.publish("rp.evidence.t1.e1", b"{}", headers={"Nats-TTL": "1s"})
    assert raised.value.err_code == _MSG_TTL_DISABLED
    assert await stored(admin, "EVIDENCE") == 0


@pytest.mark.parametrize(
    ("destination", "stream"),
    [
        ("rp.risk.t1.e1", "RISK"),
        ("rp.dlq.risk.t1.e1", "DLQ"),
        ("rp.audit.t1.e1", "AUDIT"),
        ("$KV.rp-checkpoints.risk", "KV_rp-checkpoints"),
    ],
)
async def test_trace_destination_is_held_to_the_publisher_permissions(
    admin: Session, producer: Session, destination: str, stream: str
) -> None:
    """A ``Nats-Trace-Dest`` naming a subject the producer may not publish is refused.

    The server checks the publisher's own publish permission on the trace
    destination, so a trace cannot write assessments, dead letters, audit
    records or checkpoints.
    """
    headers = {"Nats-Trace-Dest": destination}
    await producer.refused(
        destination, producer.js.publish("rp.evidence.t1.e1", b"{}", headers=headers)
    )
    assert await stored(admin, stream) == 0


@pytest.mark.parametrize("subject", ["rp.evidence.acme", "rp.evidence.acme.e1.x"])
async def test_producer_cannot_publish_malformed_evidence_subjects(
    admin: Session, producer: Session, subject: str
) -> None:
    """Evidence subjects are rp.evidence.<tenant>.<entity>: three or five tokens are refused."""
    await producer.refused(subject, producer.js.publish(subject, b"{}"))
    assert await stored(admin, "EVIDENCE") == 0


async def test_producer_has_no_consumer_api(admin: Session, producer: Session) -> None:
    """Neither an ephemeral reader nor a named consumer: the producer reads by direct get only."""
    del admin  # the streams exist
    reader = {"stream_name": "EVIDENCE", "config": {"name": "rd_1", "ack_policy": "none"}}
    for subject, body in [
        ("$JS.API.CONSUMER.CREATE.EVIDENCE", reader),
        ("$JS.API.CONSUMER.CREATE.EVIDENCE.rd_1", reader),
        ("$JS.API.CONSUMER.NAMES.EVIDENCE", None),
    ]:
        await producer.refused(subject, producer.request(subject, body))


async def test_a_trace_aimed_at_evidence_is_dead_lettered(
    admin: Session, producer: Session, secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """What tracing leaves a producer: a trace on its own evidence subject, which is no event.

    The server stores the trace in EVIDENCE; the worker dead-letters it and
    scores the traced evidence itself.
    """
    line = evidence_line("tr-1", tenant="t1", entity="e1").encode()
    await producer.js.publish(
        "rp.evidence.t1.e1", line, headers={"Nats-Trace-Dest": "rp.evidence.t1.e2"}
    )
    env = {
        "RISKPIPE_NATS_URL": secured_server.url,
        "RISKPIPE_NATS_USER": "worker",
        "RISKPIPE_NATS_PASSWORD": nats_passwords["worker"],
        "RISKPIPE_INBOX_PREFIX": inbox_prefix("worker"),
    }
    worked = riskpipe("worker", "--until-idle", "--no-http", env=env)
    assert worked.returncode == 0, worked.stderr
    trace = await admin.js.get_last_msg("EVIDENCE", STORED("rp.evidence.t1.e2"))
    assert b'"server"' in trace.data
    assert await admin.js.get_last_msg("DLQ", "rp.dlq.risk.t1.e2")
    assert await admin.js.get_last_msg("RISK", "rp.risk.t1.e1")
