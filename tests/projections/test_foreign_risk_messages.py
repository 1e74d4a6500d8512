"""A message on an entity's risk subject that is not an assessment never stops the entity.

Any client of the unauthenticated server can put one there: by publishing
junk, or by naming the subject as the ``Nats-Trace-Dest`` of any message, so
that nats-server itself stores its JSON trace event on it. RISK denies
deletes, so such a message stays forever; the projection builds on the last
valid assessment and still fences on the subject's true last sequence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from support.cli import riskpipe
from support.events import evidence
from support.nats import raw_publish, trace_to
from support.pipeline import run_worker, wait_for_messages

from projections import DeadLetterQueue
from projections.audit import replay
from projections.risk._projection import FOREIGN_WALK_LIMIT
from riskpipe.status import pipeline_status

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer
    from riskpipe.worker import Worker

VICTIM = "rp.risk.acme.victim"
_NO_HEADERS = b"NATS/1.0\r\n"


async def _assessments(store: EventStore) -> dict[int, dict[str, Any]]:
    """The valid assessments on RISK by sequence; what is not one is left out."""
    return {
        rec.sequence: dict(rec.event.data or {})
        async for rec in store.read_all(stream=store.config.stream_for("risk"))
        if rec.event is not None
    }


def _foreign(worker: Worker) -> float:
    value = worker.registry.get_sample_value("riskpipe_risk_foreign_messages_total")
    return 0.0 if value is None else value


async def test_a_trace_on_an_entitys_risk_subject_does_not_poison_it(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Assessed, traced, assessed again: the second builds on the first, fenced after the trace."""
    await store.append(evidence("first", tenant="acme", entity="victim", severity="critical"))
    await run_worker(store, nats_server.url)
    await trace_to(nats_server.url, VICTIM)
    await wait_for_messages(store, "RISK", 2)
    await store.append(evidence("second", tenant="acme", entity="victim", minute=1))
    worker = await run_worker(store, nats_server.url)

    assert worker.outcomes == {"assessed": 1}
    assert await DeadLetterQueue(store, "risk").list() == []
    assessments = await _assessments(store)
    assert sorted(assessments) == [1, 3]  # the trace is RISK seq 2; the fence was on it
    second = assessments[3]
    assert second["cursor"] == 2
    assert "critical" in second["state"]["severity_mass"]  # carried on from the first
    assert _foreign(worker) == 1

    report = await replay(store)
    (finding,) = report.findings
    assert (finding.kind, finding.assessment_sequence) == ("unreadable", 2)
    assert (finding.tenant, finding.entity) == ("acme", "victim")
    assert report.totals.checked == 2


@pytest.mark.parametrize(
    "junk",
    [
        b"not json",
        b'{"specversion": "1.0", "type": "riskpipe.evidence.recorded.v1"}',
        b"[]",
        b'{"type": "riskpipe.risk.assessed.v1", "data": {"evidence": {"sequence": 2}}}',
        b'{"type": "riskpipe.risk.assessed.v1", "data": {"evidence": {"sequence": 99}}}',
    ],
)
async def test_junk_before_any_assessment_leaves_the_entity_at_its_start(
    nats_server: NatsServer, store: EventStore, junk: bytes
) -> None:
    """Junk is the subject's only message: the entity starts from the initial state after it."""
    await raw_publish(nats_server.url, VICTIM, _NO_HEADERS, junk)
    await wait_for_messages(store, "RISK", 1)
    await store.append(evidence("first", tenant="acme", entity="victim"))
    await store.append(evidence("second", tenant="acme", entity="victim", minute=1))
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"assessed": 2}
    assert sorted(await _assessments(store)) == [2, 3]
    assert _foreign(worker) == 1
    report = await replay(store)
    assert [(f.kind, f.assessment_sequence) for f in report.findings] == [("unreadable", 1)]
    assert report.totals.checked == 2


async def test_more_junk_than_the_walk_reads_is_a_dead_letter_not_a_reset(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Past the bound, the evidence is dead-lettered: never scored from a forgotten state."""
    await store.append(evidence("first", tenant="acme", entity="victim", severity="critical"))
    await run_worker(store, nats_server.url)
    for _ in range(FOREIGN_WALK_LIMIT + 1):
        await store.client.nc.publish(VICTIM, b"junk")
    await wait_for_messages(store, "RISK", FOREIGN_WALK_LIMIT + 2)
    await store.append(evidence("second", tenant="acme", entity="victim", minute=1))
    worker = await run_worker(store, nats_server.url)
    assert worker.outcomes == {"dead_lettered": 1}
    (letter,) = await DeadLetterQueue(store, "risk").list()
    assert letter.data.error_type == "ForeignMessagesError"
    assert VICTIM in letter.data.error_message
    assert len(await _assessments(store)) == 1


async def test_status_leaves_foreign_messages_out_of_the_books_and_names_them(
    nats_server: NatsServer, store: EventStore
) -> None:
    """Traces on RISK and DLQ are neither assessments nor dead letters: the books still balance."""
    await store.append(evidence("first", tenant="acme", entity="victim"))
    await run_worker(store, nats_server.url)
    await trace_to(nats_server.url, VICTIM)
    await trace_to(nats_server.url, "rp.dlq.risk.acme.victim")
    await wait_for_messages(store, "RISK", 2)
    await wait_for_messages(store, "DLQ", 1)
    status = await pipeline_status(store, "risk")
    assert status.balanced, status
    assert (status.assessed, status.dlq_depth) == (1, 0)
    assert status.foreign == {"RISK": [2], "DLQ": [1]}
    shown = riskpipe("status", env={"RISKPIPE_NATS_URL": nats_server.url})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "foreign on RISK: 1 (sequences 2), not counted" in shown.stdout
