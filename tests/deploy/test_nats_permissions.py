"""A real server on deploy/nats/accounts.conf: each user may do its job and nothing more."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from eventstore import StoreConfig
from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator

    from nats.aio.client import Client
    from nats.js.client import JetStreamContext

ACCOUNTS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "accounts.conf"
_VIOLATION = re.compile(
    r'permissions violation for (?:publish|subscription) to "([^"]+)"', re.IGNORECASE
)
_ROLLUP_NOT_PERMITTED = 10111
_MSG_TTL_DISABLED = 10166


class Session:
    """One user's connection; it records which subjects the server refused it."""

    def __init__(self, user: str, nc: Client) -> None:
        self.user = user
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=3)
        self._refusals: dict[str, asyncio.Future[None]] = {}

    def _refusal(self, subject: str) -> asyncio.Future[None]:
        key = subject.lower()  # nats-py lower-cases the server's error line
        if key not in self._refusals:
            self._refusals[key] = asyncio.get_running_loop().create_future()
        return self._refusals[key]

    async def on_error(self, exc: Exception) -> None:
        """Error callback: resolve the refusal of the subject a violation names."""
        if (match := _VIOLATION.search(str(exc))) and not self._refusal(match[1]).done():
            self._refusal(match[1]).set_result(None)

    async def refused(self, subject: str, operation: Awaitable[object]) -> None:
        """Start ``operation``; return once the server refuses ``subject``, fail if it succeeds."""
        task, refusal = asyncio.ensure_future(operation), self._refusal(subject)
        try:
            async with asyncio.timeout(3):
                done, _ = await asyncio.wait({task, refusal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if refusal not in done:
            pytest.fail(f"{self.user} was allowed {subject}: {task.result()!r}")

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request; the decoded answer, error or not."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self.nc.request(f"$JS.API.{subject}", payload, timeout=3)
        answer: dict[str, Any] = json.loads(msg.data)
        return answer

    def request(self, subject: str, body: dict[str, Any] | None = None) -> Awaitable[object]:
        """A raw request on ``subject``, for the refusal checks."""
        payload = json.dumps(body).encode() if body is not None else b""
        return self.nc.request(subject, payload, timeout=3)

    async def subscribe(self, subject: str) -> None:
        """Subscribe and round-trip to the server, so a refusal arrives before this returns."""
        await self.nc.subscribe(subject)
        await self.nc.flush(timeout=3)


@pytest.fixture
def server(tmp_path: Path, nats_passwords: dict[str, str]) -> Iterator[NatsServer]:
    """A server started from the unmodified ``accounts.conf``."""
    del nats_passwords  # needed for the environment variables it exports
    server = NatsServer(data_dir=tmp_path / "nats", config_file=ACCOUNTS_CONF)
    server.start()
    yield server
    server.kill()


class Sessions:
    """Opens one connection per user and closes them all at the end of a test."""

    def __init__(self, server: NatsServer, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords
        self.opened: list[Session] = []

    async def open(self, user: str) -> Session:
        """Connect as ``user`` with its password."""
        session = Session(user, nats.aio.client.Client())
        async with asyncio.timeout(5):
            await session.nc.connect(
                self.server.url,
                user=user,
                password=self.passwords[user],
                allow_reconnect=False,
                error_cb=session.on_error,
            )
        self.opened.append(session)
        return session

    async def close(self) -> None:
        """Close every connection this test opened."""
        for session in self.opened:
            await session.nc.close()


@pytest.fixture
async def sessions(server: NatsServer, nats_passwords: dict[str, str]) -> AsyncIterator[Sessions]:
    """Connections for the test, closed after it."""
    opened = Sessions(server, nats_passwords)
    yield opened
    await opened.close()


@pytest.fixture
async def admin(sessions: Sessions) -> Session:
    """The admin, after creating every stream and bucket exactly as ``riskpipe init`` does."""
    admin = await sessions.open("admin")
    for config in StoreConfig().stream_configs():
        answer = await admin.api(f"STREAM.CREATE.{config['name']}", config)
        assert "error" not in answer, answer
    return admin


@pytest.fixture
async def producer(admin: Session, sessions: Sessions) -> Session:
    """The producer, connected once the streams exist."""
    del admin
    return await sessions.open("producer")


@pytest.fixture
async def worker(admin: Session, sessions: Sessions) -> Session:
    """The worker, connected once the streams exist."""
    del admin
    return await sessions.open("worker")


@pytest.fixture
async def auditor(admin: Session, sessions: Sessions) -> Session:
    """The auditor, connected once the streams exist."""
    del admin
    return await sessions.open("auditor")


async def stored(admin: Session, stream: str) -> int:
    """How many messages ``stream`` holds, as the admin sees it."""
    return (await admin.js.stream_info(stream)).state.messages


async def create_risk_consumer(session: Session) -> None:
    """Create the worker's durable consumer the way the projection does."""
    config = {"durable_name": "risk", "ack_policy": "explicit", "filter_subject": "rp.evidence.>"}
    answer = await session.api(
        "CONSUMER.CREATE.EVIDENCE.risk", {"stream_name": "EVIDENCE", "config": config}
    )
    assert "error" not in answer, answer


# -- everyone -----------------------------------------------------------------


@pytest.mark.parametrize(("user", "password"), [(None, None), ("producer", "wrong-password")])
async def test_unknown_clients_are_refused(
    server: NatsServer, user: str | None, password: str | None
) -> None:
    """A client without credentials, or with a wrong password, cannot connect."""
    nc = nats.aio.client.Client()

    async def quiet(_exc: Exception) -> None:
        """The refusal is raised by ``connect``."""

    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            async with asyncio.timeout(5):
                await nc.connect(
                    server.url, user=user, password=password, allow_reconnect=False, error_cb=quiet
                )
    finally:
        await nc.close()  # nats-py leaves the socket of a refused connection open


# -- producer -----------------------------------------------------------------


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


async def test_producer_reads_back_its_evidence(producer: Session) -> None:
    """Direct get, message get and an ephemeral pull consumer all work for the producer."""
    await producer.js.publish("rp.evidence.t1.e1", b'{"n":1}')
    direct = await producer.js.get_last_msg("EVIDENCE", "rp.evidence.t1.e1", direct=True)
    by_api = await producer.js.get_msg("EVIDENCE", seq=1)
    assert direct.data == by_api.data == b'{"n":1}'
    assert (await producer.js.account_info()).streams >= 1
    legacy = await producer.api(
        "CONSUMER.CREATE.EVIDENCE",
        {"stream_name": "EVIDENCE", "config": {"ack_policy": "none", "mem_storage": True}},
    )
    assert "error" not in legacy, legacy
    sub = await producer.js.pull_subscribe(
        "rp.evidence.t1.e1", stream="EVIDENCE", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
    )
    assert [msg.data for msg in await sub.fetch(1, timeout=3)] == [b'{"n":1}']
    await sub.unsubscribe()
    for name in (sub._consumer, legacy["name"]):  # noqa: SLF001 - nats-py keeps the name private
        assert await producer.js.delete_consumer("EVIDENCE", name)


async def test_producer_cannot_listen_on_stream_subjects(producer: Session) -> None:
    """A core subscription to rp.> (assessments in flight) is refused to the producer."""
    await producer.refused("rp.>", producer.subscribe("rp.>"))


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


async def test_trace_destination_is_held_to_the_publisher_permissions(
    admin: Session, producer: Session
) -> None:
    """A ``Nats-Trace-Dest`` naming a subject the producer may not publish is refused."""
    headers = {"Nats-Trace-Dest": "rp.risk.t1.e1"}
    await producer.refused(
        "rp.risk.t1.e1", producer.js.publish("rp.evidence.t1.e1", b"{}", headers=headers)
    )
    assert await stored(admin, "RISK") == 0


# -- worker -------------------------------------------------------------------


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


async def test_worker_reads_the_last_assessment_of_an_entity(worker: Session) -> None:
    """A direct get by subject returns the entity's latest assessment to the worker."""
    await worker.js.publish("rp.risk.t1.e1", b"old")
    await worker.js.publish("rp.risk.t1.e1", b"new")
    last = await worker.js.get_last_msg("RISK", "rp.risk.t1.e1", direct=True)
    assert (last.data, last.seq) == (b"new", 2)
    assert (await worker.js.get_msg("RISK", seq=1)).data == b"old"


async def test_worker_consumes_evidence_through_its_durable_consumer(
    producer: Session, worker: Session
) -> None:
    """The worker creates ``risk``, fetches evidence and acks it; the ack floor moves."""
    await producer.js.publish("rp.evidence.t1.e1", b"{}")
    direct = await worker.js.get_last_msg("EVIDENCE", "rp.evidence.t1.e1", direct=True)
    assert direct.data == (await worker.js.get_msg("EVIDENCE", seq=1)).data == b"{}"
    await create_risk_consumer(worker)
    sub = await worker.js.pull_subscribe_bind("risk", stream="EVIDENCE")
    [msg] = await sub.fetch(1, timeout=3)
    await msg.ack_sync(timeout=3)
    info = await worker.js.consumer_info("EVIDENCE", "risk")
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (1, 0)
    partition = await worker.api(
        "CONSUMER.DURABLE.CREATE.EVIDENCE.risk-0",
        {"stream_name": "EVIDENCE", "config": {"durable_name": "risk-0", "ack_policy": "explicit"}},
    )
    assert "error" not in partition, partition


async def test_worker_reads_and_writes_its_buckets(worker: Session) -> None:
    """The worker puts, compare-and-sets and reads rp-checkpoints and rp-leases."""
    checkpoints = await worker.js.key_value("rp-checkpoints")
    revision = await checkpoints.put("risk", b"1")
    assert await checkpoints.update("risk", b"2", last=revision) == revision + 1
    assert (await checkpoints.get("risk")).value == b"2"
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


# -- the worker's consumer ----------------------------------------------------


@pytest.mark.parametrize("user", ["producer", "auditor"])
async def test_only_the_worker_drives_its_durable_consumer(
    admin: Session, sessions: Sessions, user: str
) -> None:
    """Others cannot redefine, drain or delete the ``risk`` consumer; it stays as created."""
    await create_risk_consumer(admin)
    other = await sessions.open(user)
    narrowed = {
        "durable_name": "risk",
        "ack_policy": "explicit",
        "filter_subject": "rp.evidence.x.>",
    }
    for subject, body in [
        ("$JS.API.CONSUMER.CREATE.EVIDENCE.risk", {"stream_name": "EVIDENCE", "config": narrowed}),
        ("$JS.API.CONSUMER.MSG.NEXT.EVIDENCE.risk", {"batch": 1}),
        ("$JS.API.CONSUMER.DELETE.EVIDENCE.risk", None),
    ]:
        await other.refused(subject, other.request(subject, body))
    info = await admin.js.consumer_info("EVIDENCE", "risk")
    assert info.config.filter_subject == "rp.evidence.>"


# -- auditor ------------------------------------------------------------------


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
    evidence = await auditor.js.get_last_msg("EVIDENCE", "rp.evidence.t1.e1", direct=True)
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
