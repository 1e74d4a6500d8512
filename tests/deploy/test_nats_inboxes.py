"""Replies on accounts.conf: each role receives them under its own inbox prefix, and only there."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from nats_sessions import inbox_prefix
from support.cli import riskpipe
from support.events import evidence, evidence_line

from eventstore import ConnectOptions, EventStore
from eventstore.errors import PermissionDeniedError
from riskpipe.client import Producer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from nats_sessions import Session, Sessions

    from riskpipe.server import NatsServer

ROLES = ("producer", "worker", "auditor")
# whose replies each foreign inbox space carries: admin's and any client's left at the default
FOREIGN = {"_INBOX.>": "admin", **{f"_INBOX_{role}.>": role for role in ROLES}}


@pytest.mark.parametrize(
    ("user", "inbox"),
    [(user, inbox) for user in ROLES for inbox, owner in FOREIGN.items() if owner != user],
)
async def test_no_role_may_listen_on_another_users_inbox(
    admin: Session, sessions: Sessions, user: str, inbox: str
) -> None:
    """Subscribing to another user's reply subjects (fetched evidence, assessments) is refused."""
    del admin  # the streams exist
    session = await sessions.open(user)
    await session.subscription_refused(inbox)


async def test_a_producer_receives_no_reply_meant_for_the_worker(
    producer: Session, worker: Session
) -> None:
    """Everything the producer may subscribe to misses the worker's fetched assessment."""
    await worker.js.publish("rp.risk.t1.e1", b"assessment")
    sniffer = await producer.nc.subscribe(f"{inbox_prefix('producer')}.>")
    last = await worker.js.get_last_msg("RISK", "rp.risk.t1.e1", direct=True)
    assert last.data == b"assessment"
    await producer.nc.flush()
    assert sniffer.pending_msgs == 0


def test_a_client_without_its_prefix_is_told_to_set_it(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """A producer left at the default ``_INBOX`` stops with one line naming --inbox-prefix."""
    admin = {"RISKPIPE_NATS_URL": secured_server.url, "RISKPIPE_NATS_USER": "admin"}
    assert (
        riskpipe(
            "init", env={**admin, "RISKPIPE_NATS_PASSWORD": nats_passwords["admin"]}
        ).returncode
        == 0
    )
    env = {
        "RISKPIPE_NATS_URL": secured_server.url,
        "RISKPIPE_NATS_USER": "producer",
        "RISKPIPE_NATS_PASSWORD": nats_passwords["producer"],
    }
    result = riskpipe("publish", "-", env=env, stdin=evidence_line("ib-1") + "\n")
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error.startswith("Error: permission denied: subscribe to _inbox.")
    assert "set --inbox-prefix or RISKPIPE_INBOX_PREFIX" in error


def test_an_inbox_prefix_with_a_wildcard_is_refused_before_connecting() -> None:
    """A prefix that cannot start a subject is a settings error (exit 2), not a hang."""
    result = riskpipe("--inbox-prefix", "_INBOX.>", "status")
    assert result.returncode == 2
    assert "RISKPIPE_INBOX_PREFIX or --inbox-prefix: the inbox prefix must be" in result.stderr


async def test_the_library_takes_the_prefix_in_its_connect_options(
    admin: Session, secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """``ConnectOptions(inbox_prefix=...)``: the producer appends and reads back its evidence."""
    del admin  # the streams exist
    options = ConnectOptions(
        user="producer", password=nats_passwords["producer"], inbox_prefix="_INBOX_producer"
    )
    async with await EventStore.connect(
        secured_server.url, schemas=build_schemas(), config=topology_config(), options=options
    ) as store:
        stored = await store.append(evidence("ib-2", tenant="t1", entity="e1"))
        last = await store.last("rp.evidence.t1.e1")
    assert last is not None
    assert last.sequence == stored.sequence


async def test_the_producer_client_records_with_its_inbox_prefix(
    admin: Session, secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """``Producer.connect(..., inbox_prefix=...)`` records as the producer; without it, refused."""
    del admin  # the streams exist
    login = {"user": "producer", "password": nats_passwords["producer"]}
    async with await Producer.connect(
        secured_server.url, inbox_prefix=inbox_prefix("producer"), **login
    ) as producer:
        recorded = await producer.record(
            "t1", "e1", "failed_login", "low", id="pc-1", source="idp", time=datetime.now(UTC)
        )
    assert recorded.sequence == 1
    with pytest.raises(PermissionDeniedError, match="set --inbox-prefix"):
        async with asyncio.timeout(5), await Producer.connect(secured_server.url, **login) as late:
            await late.record(
                "t1", "e1", "failed_login", "low", id="pc-2", source="idp", time=datetime.now(UTC)
            )
