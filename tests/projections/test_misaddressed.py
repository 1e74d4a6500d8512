"""Evidence written around the store on a subject that is not its own is dead-lettered once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.events import evidence
from support.nats import raw_publish
from support.pipeline import read_streams, run_worker

from projections import DeadLetterQueue
from projections.audit import replay
from riskpipe.status import pipeline_status

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer

_NO_HEADERS = b"NATS/1.0\r\n"


def _payload(tenant: str, entity: str, event_id: str = "x1") -> bytes:
    return evidence(event_id, tenant=tenant, entity=entity).model_dump_json().encode()


async def test_an_envelope_naming_another_entity_is_not_assessed_as_either(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Evidence about evil/victim stored on acme/e01 is dead-lettered, not scored for anyone."""
    await raw_publish(
        nats_server.url, "rp.evidence.acme.e01", _NO_HEADERS, _payload("evil", "victim")
    )
    await run_worker(store, nats_server.url)
    streams = await read_streams(store)
    assert streams.assessments == {}
    (letter,) = await DeadLetterQueue(store, "risk").list()
    assert letter.data.error_type == "MisaddressedEventError"
    assert "belongs on 'rp.evidence.evil.victim' (stored as 'rp.evidence." in (
        letter.data.error_message
    )
    assert (letter.tenant, letter.entity) == ("acme", "e01")


@pytest.mark.parametrize(
    ("subject", "stored"),
    [
        ("rp.evidence.acme", 0),
        ("rp.evidence.acme.e01.extra", 0),
        ("rp.evidence.3.acme.e01", 0),  # a partition given by hand is not taken either
        ("rp.evidence.acme.e\u00e91", 1),
    ],
)
async def test_a_subject_that_is_not_an_entitys_is_dead_lettered_once(
    nats_server: NatsServer, store: EventStore, subject: str, stored: int
) -> None:
    """A short, long or non-ASCII subject is at most one dead letter; the entity goes on.

    The evidence stream captures ``rp.evidence.<tenant>.<entity>`` only: a
    subject with another number of tokens is not stored at all. A subject of
    the right shape with a token that is not a valid one is stored, and
    dead-lettered once. (The server itself refuses a publish to a subject
    with a wildcard.)
    """
    await store.append(evidence("before", tenant="acme", entity="e01"))
    await raw_publish(nats_server.url, subject, _NO_HEADERS, _payload("acme", "e01", "odd"))
    await store.append(evidence("after", tenant="acme", entity="e01", minute=1))
    assert (await store.stream_state("EVIDENCE"))["messages"] == 2 + stored
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 2, "dead_lettered": 1} if stored else {"assessed": 2}
    streams = await read_streams(store)
    assert sorted(a["evidence"]["id"] for (a, *_) in streams.assessments.values()) == [
        "after",
        "before",
    ]
    status = await pipeline_status(store, "risk")
    assert status.balanced, status
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.dead_lettered == stored
