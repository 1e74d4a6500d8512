"""Per-tenant producers (deploy/nats/tenants.example.conf): one tenant's evidence, nobody else's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from nats_sessions import Sessions
from support.cli import riskpipe
from support.events import evidence_line

from riskpipe.topology import topology_config

STORED = topology_config().stored
"""Evidence as the store keeps it: the server adds the partition (default 16)."""

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from riskpipe.server import NatsServer


@pytest.fixture
async def tenants(
    tenant_server: NatsServer, tenant_passwords: dict[str, str]
) -> AsyncIterator[Sessions]:
    """Connections to the server with tenant producers, once the streams exist."""
    opened = Sessions(tenant_server, tenant_passwords)
    admin = await opened.open("admin")
    for config in topology_config().stream_configs():
        assert "error" not in await admin.api(f"STREAM.CREATE.{config['name']}", config)
    yield opened
    await opened.close()


async def test_a_tenant_producer_appends_and_reads_back_its_own_evidence(
    tenants: Sessions,
) -> None:
    """Acme's producer publishes acme's evidence and reads its last by a direct get."""
    acme = await tenants.open("producer-acme")
    ack = await acme.js.publish("rp.evidence.acme.e1", b"mine")
    last = await acme.js.get_last_msg("EVIDENCE", STORED("rp.evidence.acme.e1"), direct=True)
    assert (last.data, last.seq) == (b"mine", ack.seq)


async def test_a_tenant_producer_cannot_write_or_read_another_tenants_evidence(
    tenants: Sessions,
) -> None:
    """Appending as globex, a direct get by globex's subject or by sequence: all refused."""
    globex = await tenants.open("producer-globex")
    await globex.js.publish("rp.evidence.globex.e1", b"theirs")
    acme = await tenants.open("producer-acme")
    await acme.refused("rp.evidence.globex.e2", acme.js.publish("rp.evidence.globex.e2", b"{}"))
    by_subject = "$JS.API.DIRECT.GET.EVIDENCE." + STORED("rp.evidence.globex.e1")
    await acme.refused(by_subject, acme.request(by_subject))
    by_body = "$JS.API.DIRECT.GET.EVIDENCE"
    await acme.refused(
        by_body, acme.request(by_body, {"seq": 1, "next_by_subj": "rp.evidence.globex.>"})
    )
    for shared in ("rp.evidence.acme", "rp.evidence.acme.e1.x"):
        await acme.refused(shared, acme.js.publish(shared, b"{}"))


@pytest.mark.parametrize("inbox", ["_INBOX_producer-globex.>", "_INBOX_producer.>", "_INBOX.>"])
async def test_a_tenant_producer_receives_no_one_elses_replies(
    tenants: Sessions, inbox: str
) -> None:
    """Another tenant's, the shared producer's and the default inbox are all refused."""
    acme = await tenants.open("producer-acme")
    await acme.subscription_refused(inbox)


async def test_riskpipe_publish_runs_as_a_tenant_producer(
    tenants: Sessions, tenant_server: NatsServer, tenant_passwords: dict[str, str]
) -> None:
    """``riskpipe publish`` with the tenant's user and inbox prefix stores its evidence."""
    env = {
        "RISKPIPE_NATS_URL": tenant_server.url,
        "RISKPIPE_NATS_USER": "producer-acme",
        "RISKPIPE_NATS_PASSWORD": tenant_passwords["producer-acme"],
        "RISKPIPE_INBOX_PREFIX": "_INBOX_producer-acme",
    }
    line = evidence_line("tn-1", tenant="acme", entity="e7") + "\n"
    published = riskpipe("publish", "--json", "-", env=env, stdin=line)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["stored"] == 1
    admin = await tenants.open("admin")
    assert (await admin.js.get_last_msg("EVIDENCE", STORED("rp.evidence.acme.e7"))).seq == 1
