"""On deploy/nats/accounts.conf a trace can only go where its publisher may publish.

nats-server publishes the trace event of a message with a ``Nats-Trace-Dest``
header to the subject it names; it checks that subject against the
publisher's own publish permissions. So the producer cannot have the server
write trace events onto assessments, dead letters, audit records or the
checkpoint bucket (the unauthenticated server has no such check: see
docs/security.md, "Message tracing").
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from nats_sessions import stored

if TYPE_CHECKING:
    from nats_sessions import Session


@pytest.mark.parametrize(
    ("destination", "stream"),
    [
        ("rp.risk.acme.victim", "RISK"),
        ("rp.dlq.risk.acme.victim", "DLQ"),
        ("rp.audit.acme.victim", "AUDIT"),
        ("$KV.rp-checkpoints.risk", "KV_rp-checkpoints"),
    ],
)
async def test_the_producer_cannot_aim_a_trace_at_what_it_may_not_write(
    admin: Session, producer: Session, destination: str, stream: str
) -> None:
    """The trace destination is refused as a permissions violation; nothing lands there."""

    async def traced() -> None:
        """Publish, then wait: only the server's refusal may end the wait."""
        headers = {"Nats-Trace-Dest": destination}
        await producer.nc.publish("rp.evidence.acme.victim", b"{}", headers=headers)
        await producer.nc.flush()
        await asyncio.Event().wait()

    await producer.refused(destination, traced())
    assert await stored(admin, stream) == 0
