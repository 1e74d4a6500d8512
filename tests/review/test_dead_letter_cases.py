"""An entity whose evidence keeps failing gets a case, when the policy asks for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from support.events import evidence
from support.pipeline import run_worker

from projections.review import read_cases

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _poison(store: EventStore, entity: str, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        await store.append_unchecked(
            "evidence", "t1", entity, b"{broken", msg_id=f"poison:{entity}:{n}"
        )


async def test_the_third_dead_letter_opens_one_case(
    store: EventStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    """With ``open_on_dead_letters = 3``: two letters open nothing, the third opens one case."""
    policy = tmp_path / "policy.toml"
    policy.write_text('version = "dl-3"\nopen_on_dead_letters = 3\n')
    await store.append(evidence("ok-1", entity="flaky", severity="low"))
    await _poison(store, "flaky", 2)
    await _poison(store, "other", 1)
    worker = await run_worker(store, nats_server.url, review_policy=policy)
    assert [host.name for host in worker.hosts] == ["risk", "review", "review-dlq"]
    assert (await read_cases(store, "t1", "flaky")).cases == []
    await _poison(store, "flaky", 2, start=2)
    worker = await run_worker(store, nats_server.url, review_policy=policy)
    cases = await read_cases(store, "t1", "flaky")
    assert len(cases.cases) == 1
    opened = cases.cases[0].opened
    assert opened.triggers == ("dead_letters",)
    assert (opened.assessment.stream, opened.policy_version) == ("DLQ", "dl-3")
    latest = await store.last(store.config.subject("risk", "t1", "flaky"))
    assert latest is not None
    assert latest.event is not None
    assert latest.event.data is not None
    recorded = latest.event.data["assessment"]
    assert (opened.assessment.level, opened.assessment.score) == (
        recorded["level"],
        recorded["score"],
    )
    assert opened.assessment.score > 0
    assert worker.hosts[2].outcomes["case_opened"] == 1
    assert worker.hosts[2].outcomes["case_joined"] == 1  # the fourth joins the open case
    assert (await read_cases(store, "t1", "other")).cases == []


async def test_without_the_setting_no_dead_letter_projection_runs(
    store: EventStore, nats_server: NatsServer
) -> None:
    """The default policy opens no case for dead letters, and runs nothing for them."""
    await _poison(store, "flaky", 5)
    worker = await run_worker(store, nats_server.url)
    assert [host.name for host in worker.hosts] == ["risk", "review"]
    assert (await read_cases(store, "t1", "flaky")).cases == []


async def test_a_foreign_message_last_on_the_risk_subject_still_opens_the_case(
    store: EventStore, nats_server: NatsServer, tmp_path: Path
) -> None:
    """What is no assessment counts as none: the case opens at low, 0, not as a dead letter."""
    policy = tmp_path / "policy.toml"
    policy.write_text('version = "dl-2"\nopen_on_dead_letters = 2\n')
    await store.append(evidence("ok-1", entity="flaky", severity="high"))
    await run_worker(store, nats_server.url, review_policy=policy)
    for n, payload in enumerate([b"{not json", b'{"assessment": {"level": "bogus"}}']):
        await store.append_unchecked("risk", "t1", "flaky", payload, msg_id=f"foreign:{n}")
    await _poison(store, "flaky", 2)
    worker = await run_worker(store, nats_server.url, review_policy=policy)
    cases = await read_cases(store, "t1", "flaky")
    assert len(cases.cases) == 1
    assessment = cases.cases[0].opened.assessment
    assert (assessment.stream, assessment.level, assessment.score) == ("DLQ", "low", 0.0)
    assert worker.hosts[2].outcomes["case_opened"] == 1
    assert worker.hosts[2].outcomes.get("dead_lettered", 0) == 0
