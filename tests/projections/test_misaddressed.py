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
    assert "rp.evidence.evil.victim" in letter.data.error_message
    assert (letter.tenant, letter.entity) == ("acme", "e01")


@pytest.mark.parametrize(
    "subject",
    [
        "rp.evidence.acme",
        "rp.evidence.acme.e01.extra",
        "rp.evidence.acme.e\u00e91",
    ],
)
async def test_a_subject_that_is_not_an_entitys_is_dead_lettered_once(
    nats_server: NatsServer, store: EventStore, subject: str
) -> None:
    """A short, long or non-ASCII subject is one dead letter; the entity goes on.

    (The server itself refuses a publish to a subject with a wildcard.)
    """
    await store.append(evidence("before", tenant="acme", entity="e01"))
    await raw_publish(nats_server.url, subject, _NO_HEADERS, _payload("acme", "e01", "odd"))
    await store.append(evidence("after", tenant="acme", entity="e01", minute=1))
    worker = await run_worker(store, nats_server.url)
    assert worker.runner.outcomes == {"assessed": 2, "dead_lettered": 1}
    streams = await read_streams(store)
    assert sorted(a["evidence"]["id"] for (a, *_) in streams.assessments.values()) == [
        "after",
        "before",
    ]
    status = await pipeline_status(store, "risk")
    assert status.balanced, status
    report = await replay(store)
    assert report.ok, report.findings
    assert report.totals.dead_lettered == 1
