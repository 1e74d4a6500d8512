"""A batch run ends idle only on the stream leader's word, never on a replica's alone."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from click.testing import CliRunner
from support.cli import provisioned_with
from support.events import evidence, evidence_line
from support.pipeline import check_invariants, read_streams, run_worker

from eventstore._jetstream._client import JetStreamClient
from eventstore._jetstream._consumer import DurableConsumer
from eventstore.errors import PermissionDeniedError, StoreTimeoutError
from projections import IdleUnconfirmedError, undrained_partitions
from riskpipe.cli import main
from riskpipe.logs import configure_logging

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer

WINDOW = 1.5


@pytest.fixture(autouse=True)
def info_lines(logging_restored: None) -> None:  # noqa: ARG001 - restores what this changes
    """Info lines reach ``capture_logs``, whatever level an earlier test's command left set.

    The retries are logged at info: at a level above it, the lines looked for
    would never be seen, and the test that proves their absence would prove nothing.
    """
    configure_logging("info", "json")


@pytest.fixture
def replicated(monkeypatch: pytest.MonkeyPatch, store: EventStore) -> None:
    """Every consumer reports two more replicas, as on an R3 cluster; elections are short."""
    info = DurableConsumer.info

    async def with_replicas(self: DurableConsumer) -> dict[str, Any]:
        found = await info(self)
        found["cluster"] = {"leader": "n1", "replicas": [{"name": "n2"}, {"name": "n3"}]}
        return found

    monkeypatch.setattr(DurableConsumer, "info", with_replicas)
    window = timedelta(seconds=WINDOW)
    monkeypatch.setattr(
        store, "config", store.config.model_copy(update={"election_window": window})
    )


def _leader_fails(
    monkeypatch: pytest.MonkeyPatch, store: EventStore, error: Exception, times: int | None
) -> list[float]:
    """The stream leader's answer fails with ``error`` ``times`` times (None: always)."""
    asked: list[float] = []
    real = store.client.leader_next_sequence

    async def leader_next_sequence(stream: str, seq: int, subject: str) -> int | None:
        asked.append(time.monotonic())
        if times is None or len(asked) <= times:
            raise error
        return await real(stream, seq, subject)

    monkeypatch.setattr(store.client, "leader_next_sequence", leader_next_sequence)
    return asked


async def _append(store: EventStore, count: int) -> None:
    results = await store.append_many([evidence(f"i{n}", minute=n) for n in range(count)])
    assert [r for r in results if isinstance(r, Exception)] == []


@pytest.mark.usefixtures("replicated")
async def test_a_leader_that_never_answers_fails_the_run_instead_of_ending_it_idle(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its consumer says nothing is pending, but a replica may say so behind the leader.

    The leader is asked again, backing off, for the election window; then the
    run fails with ``IdleUnconfirmedError`` (the worker exits non-zero), where
    it used to take the consumer's word after three failed asks and exit 0.
    """
    await _append(store, 5)
    _leader_fails(monkeypatch, store, StoreTimeoutError("no leader"), times=None)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs, pytest.raises(IdleUnconfirmedError) as failed:
        await run_worker(store, nats_server.url, review=False)
    assert time.monotonic() - started >= WINDOW
    assert "EVIDENCE" in str(failed.value)
    assert "no leader" in str(failed.value)
    retries = [
        line["retry_in"]
        for line in logs
        if line["event"] == "projection.idle_unconfirmed_retry" and line["consumer"] == "risk-0"
    ]
    assert len(retries) >= 2, "asked again, not given up on after a few asks"
    assert retries == sorted(retries), "backing off"
    assert retries[0] < retries[-1], "backing off"
    assert [line for line in logs if line["event"] == "projection.idle_unconfirmed"]
    # nothing was left unhandled here: failing is the price of not knowing it
    check_invariants(await read_streams(store))


@pytest.mark.usefixtures("replicated")
async def test_a_leader_that_answers_after_an_election_ends_the_run_idle(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few failed asks while the leader is elected, then its answer: idle, every evidence done."""
    await _append(store, 5)
    asked = _leader_fails(monkeypatch, store, StoreTimeoutError("electing"), times=3)
    await run_worker(store, nats_server.url, review=False)
    assert len(asked) > 3
    streams = await read_streams(store)
    assert len(streams.assessments) == 5
    check_invariants(streams)


@pytest.mark.usefixtures("replicated")
async def test_a_user_who_may_not_ask_the_leader_of_a_replicated_stream_fails_at_once(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal will not change within the window: the run fails naming the grant it needs."""
    await _append(store, 2)
    _leader_fails(monkeypatch, store, PermissionDeniedError("permission denied"), times=None)
    with structlog.testing.capture_logs() as logs, pytest.raises(IdleUnconfirmedError) as failed:
        await run_worker(store, nats_server.url, review=False)
    assert "$JS.API.STREAM.MSG.GET.EVIDENCE" in str(failed.value)
    assert not [line for line in logs if line["event"] == "projection.idle_unconfirmed_retry"]


async def test_on_a_stream_without_replicas_the_consumer_speaks_for_the_leader(
    nats_server: NatsServer, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One copy of the stream: a leader that cannot be asked changes nothing, the run ends idle."""
    await _append(store, 3)
    _leader_fails(monkeypatch, store, PermissionDeniedError("permission denied"), times=None)
    await run_worker(store, nats_server.url, review=False)
    streams = await read_streams(store)
    assert len(streams.assessments) == 3
    check_invariants(streams)


@pytest.mark.parametrize("replicas", [True, False])
async def test_a_shared_batch_asks_the_leader_whether_a_partition_is_drained(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, *, replicas: bool
) -> None:
    """A replicated consumer's "nothing pending" is not believed when the leader holds more.

    Each consumer here says so, as one on a replica still catching up would,
    while one evidence is unhandled: with replicas, its partition is not
    drained; with none, the consumer's word is the only one there is.
    """
    await _append(store, 1)

    async def caught_up_replica(_consumer: DurableConsumer) -> dict[str, Any]:
        found: dict[str, Any] = {"num_pending": 0, "num_ack_pending": 0}
        found["ack_floor"] = {"stream_seq": 0}
        if replicas:
            found["cluster"] = {"leader": "n1", "replicas": [{"name": "n2"}, {"name": "n3"}]}
        return found

    monkeypatch.setattr(DurableConsumer, "info", caught_up_replica)
    through = await store.client.stream_info(store.config.stream_for("evidence"))
    assert through is not None
    last = int(through["state"]["last_seq"])
    left = await undrained_partitions(store, "risk", last, source="evidence")
    assert len(left) == (1 if replicas else 0)


def test_the_worker_command_exits_1_with_one_line_naming_the_leader_it_could_not_ask(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``riskpipe worker --until-idle`` as a batch job sees it: exit 1, never a silent 0."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_ELECTION_WINDOW": "1"})
    provisioned_with(runner, tmp_path, [evidence_line(f"c{n}", minute=n) for n in range(3)])
    info = DurableConsumer.info

    async def with_replicas(self: DurableConsumer) -> dict[str, Any]:
        found = await info(self)
        found["cluster"] = {"leader": "n1", "replicas": [{"name": "n2"}, {"name": "n3"}]}
        return found

    async def no_leader(*_: object) -> int | None:
        raise StoreTimeoutError("no leader")

    monkeypatch.setattr(DurableConsumer, "info", with_replicas)
    monkeypatch.setattr(JetStreamClient, "leader_next_sequence", no_leader)
    result = runner.invoke(main, ["worker", "--until-idle", "--no-http"])
    assert result.exit_code == 1, result.output
    # the command logs to stderr in its own format: one worker.failed record, the reason in it
    failed = [line for line in result.stderr.splitlines() if "worker.failed" in line]
    assert len(failed) == 1, result.stderr
    assert "cannot tell whether consumer risk-" in failed[0]
    assert "no leader" in failed[0]
