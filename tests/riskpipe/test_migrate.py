"""`riskpipe migrate`: the evidence of one store copied into another, exactly, once, in order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from support.cli import riskpipe
from support.events import evidence
from support.nats import raw_publish
from support.pipeline import check_invariants, read_streams

from eventstore import AppendResult, EventStore, partition_of
from riskpipe.migrate import MigrateError, migrate
from riskpipe.server import NatsServer, reserve_ports
from riskpipe.settings import Settings
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence
    from pathlib import Path

    from eventstore import CloudEvent, Copy, RecordedEvent
    from eventstore.errors import EventStoreError


@pytest.fixture
def target_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A second nats-server, the new store: its own port and store directory."""
    server = NatsServer(data_dir=tmp_path / "target-nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def target(target_server: NatsServer) -> AsyncIterator[EventStore]:
    """A connection to the target server, not provisioned: migrate makes the store."""
    es = await EventStore.connect(
        target_server.url, schemas=build_schemas(), config=topology_config()
    )
    try:
        yield es
    finally:
        await es.close()


async def _made_before_partitions(store: EventStore) -> None:
    """EVIDENCE as a store made before partitions had it: `rp.evidence.>`, no transform, no P."""
    info = await store.client.stream_info(store.config.stream_for("evidence"))
    assert info is not None
    old = {**info["config"], "subjects": ["rp.evidence.>"], "metadata": {}}
    del old["subject_transform"]
    await store.client.api(f"STREAM.DELETE.{store.config.stream_for('evidence')}")
    await store.client.api(f"STREAM.CREATE.{store.config.stream_for('evidence')}", old)


def _spread(count: int, *, tenants: int = 3, entities: int = 7) -> list[CloudEvent]:
    """``count`` evidence events over several tenants and entities, each entity's in time order."""
    return [
        evidence(
            f"ev-{n}",
            tenant=f"t{n % tenants}",
            entity=f"user-{n % entities}",
            minute=n,
            severity=("low", "medium", "high", "critical")[n % 4],
        )
        for n in range(count)
    ]


async def _append(store: EventStore, events: list[CloudEvent]) -> None:
    results = await store.append_many(events)
    assert not [r for r in results if isinstance(r, Exception)]


async def _all(store: EventStore) -> list[RecordedEvent]:
    return [rec async for rec in store.read_all()]


def _migrate(source: str, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return riskpipe("--nats-url", source, "migrate", "--to", target, *args)


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    (line,) = result.stdout.splitlines()
    summary: dict[str, Any] = orjson.loads(line)
    return summary


def _identity(rec: RecordedEvent) -> tuple[str, str, str, str, str]:
    assert rec.event is not None, rec.error
    event = rec.event
    return (event.source, event.id, event.time.isoformat(), event.tenant, event.subject)


async def test_an_old_store_is_copied_and_assessed_once_in_the_new_one(
    nats_server: NatsServer, store: EventStore, target_server: NatsServer, target: EventStore
) -> None:
    """Old shape in, 16 partitions out: same ids, times, bytes; the target scores each once."""
    await _made_before_partitions(store)
    events = _spread(63)
    await _append(store, events[:40])
    poison = await store.append_unchecked("evidence", "t1", "user-1", b"{broken", msg_id="p:1")
    await _append(store, events[40:])
    result = _migrate(nats_server.url, target_server.url, "--json")
    assert result.returncode == 0, result.stderr
    summary = _summary(result)
    assert summary["source_partitions"] is None
    assert summary["target_partitions"] == 16
    assert "EVIDENCE" in summary["provisioned"]
    assert (summary["copied"], summary["already_present"], summary["skipped"]) == (64, 0, [])
    assert [p["sequence"] for p in summary["invalid"]] == [poison.sequence]
    started = [line for line in result.stderr.splitlines() if '"migrate.started"' in line]
    assert len(started) == 1
    assert any('"migrate.finished"' in line for line in result.stderr.splitlines())

    await target.adopt_partitions()
    source_records, copied = await _all(store), await _all(target)
    assert [r.payload for r in copied] == [r.payload for r in source_records]
    valid = [r for r in source_records if r.sequence != poison.sequence]
    assert [_identity(r) for r in copied if r.event is not None] == [_identity(r) for r in valid]

    worked = riskpipe(
        "worker", "--until-idle", "--no-http", env={"RISKPIPE_NATS_URL": target_server.url}
    )
    assert worked.returncode == 0, worked.stderr
    streams = await read_streams(target)
    (poison_copy,) = [seq for seq, event in streams.evidence.items() if event is None]
    check_invariants(streams, poison=[poison_copy])
    assert sum(len(a) for a in streams.assessments.values()) == len(events)
    for rec in copied:
        if rec.event is not None:
            (assessment,) = streams.assessments[rec.sequence]
            assert assessment["evidence"]["id"] == rec.event.id


async def test_a_store_is_repartitioned(
    nats_server: NatsServer, store: EventStore, target_server: NatsServer, target: EventStore
) -> None:
    """P = 16 to P = 4: the target records 4, spreads the entities over all four, keeps order."""
    events = _spread(120, tenants=4, entities=11)
    await _append(store, events)
    result = _migrate(nats_server.url, target_server.url, "--partitions", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = _summary(result)
    assert (summary["source_partitions"], summary["target_partitions"]) == (16, 4)
    assert summary["copied"] == len(events)
    info = await target.client.stream_info("EVIDENCE")
    assert info is not None
    assert info["config"]["metadata"]["riskpipe.partitions"] == "4"
    assert await target.adopt_partitions() == 4
    copied = await _all(target)
    assert {int(r.subject.split(".")[2]) for r in copied} == {0, 1, 2, 3}
    for rec in copied:
        assert rec.event is not None
        partition = partition_of(rec.event.tenant, rec.event.subject, 4)
        assert rec.subject == f"rp.evidence.{partition}.{rec.event.tenant}.{rec.event.subject}"
    assert [r.event.id for r in copied if r.event] == [e.id for e in events]
    for entity in ("user-0", "user-5"):
        in_source = [r.event.id async for r in store.read("t0", entity) if r.event]
        in_target = [r.event.id async for r in target.read("t0", entity) if r.event]
        assert in_target == in_source

    again = _migrate(nats_server.url, target_server.url, "--partitions", "8")
    assert again.returncode == 1
    assert "has 4 partitions, not 8" in again.stderr


@pytest.mark.slow
async def test_a_killed_migrate_goes_on_where_it_stopped(
    nats_server: NatsServer, store: EventStore, target_server: NatsServer, target: EventStore
) -> None:
    """Killed mid-copy, run again: each event once; run once more past the window: copies 0."""
    events = _spread(30_000, tenants=5, entities=97)
    for start in range(0, len(events), 5000):
        await _append(store, events[start : start + 5000])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKPIPE_")}
    proc = subprocess.Popen(  # noqa: ASYNC220 - killed below, by PID
        [sys.executable, "-m", "riskpipe", "--nats-url", nats_server.url, "--log-format", "json",
         "migrate", "--to", target_server.url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            while not await _holds(target, 1):
                assert proc.poll() is None, "migrate finished before it could be killed"
                await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    await asyncio.sleep(0.5)  # what the killed run had in flight lands, or not
    held = int((await target.stream_state("EVIDENCE"))["messages"])
    assert 0 < held < len(events), "killed mid-copy"

    result = _migrate(nats_server.url, target_server.url, "--json")
    assert result.returncode == 0, result.stderr
    summary = _summary(result)
    assert summary["already_present"] >= held
    assert summary["copied"] + summary["already_present"] == len(events)
    await target.adopt_partitions()
    copied = await _all(target)
    assert [r.event.id for r in copied if r.event] == [e.id for e in events]

    await _forget_keys(target)
    finished = _migrate(nats_server.url, target_server.url, "--json")
    assert finished.returncode == 0, finished.stderr
    assert (_summary(finished)["copied"], _summary(finished)["already_present"]) == (0, len(events))
    assert int((await target.stream_state("EVIDENCE"))["messages"]) == len(events)
    # the premise: the target had forgotten the keys, so only migrate's check kept repeats out
    assert (await target.append(events[0])).duplicate is False


async def _holds(store: EventStore, count: int) -> bool:
    info = await store.client.stream_info("EVIDENCE")
    return info is not None and int(info["state"]["messages"]) >= count


async def _forget_keys(store: EventStore) -> None:
    """Let the target's duplicate window pass: shrink it to a second, wait, put it back."""
    info = await store.client.stream_info("EVIDENCE")
    assert info is not None
    config = info["config"]
    await store.client.api("STREAM.UPDATE.EVIDENCE", {**config, "duplicate_window": 1_000_000_000})
    await asyncio.sleep(2.5)
    await store.client.api("STREAM.UPDATE.EVIDENCE", config)


async def test_refusals(
    nats_server: NatsServer, store: EventStore, target_server: NatsServer, target: EventStore
) -> None:
    """Other evidence in the target, --to the source itself, a target that is down: exit 1, why."""
    await _append(store, _spread(10))
    unrelated = await EventStore.connect(
        target_server.url, schemas=build_schemas(), config=topology_config()
    )
    try:
        await unrelated.provision()
        await _append(unrelated, [evidence("someone-else", entity="u9")])
    finally:
        await unrelated.close()
    refused = _migrate(nats_server.url, target_server.url)
    assert refused.returncode == 1
    assert "is not a copy of the source's" in refused.stderr
    assert "at sequence 1" in refused.stderr
    assert int((await target.stream_state("EVIDENCE"))["messages"]) == 1, "nothing copied"

    itself = _migrate(nats_server.url, nats_server.url.replace("127.0.0.1", "localhost"))
    assert itself.returncode == 1
    assert "reaches the source store itself" in itself.stderr

    (free,) = reserve_ports("127.0.0.1", 1)
    down = _migrate(nats_server.url, f"nats://127.0.0.1:{free}")
    assert down.returncode == 1
    assert "the target (--to)" in down.stderr
    assert "cannot connect" in down.stderr
    assert "Traceback" not in down.stderr


async def test_a_source_without_evidence_is_refused(
    target_server: NatsServer, tmp_path: Path
) -> None:
    """A server where `riskpipe init` never ran has nothing to copy: exit 1, saying so."""
    empty = NatsServer(data_dir=tmp_path / "empty")
    empty.start()
    try:
        result = _migrate(empty.url, target_server.url)
    finally:
        empty.kill()
    assert result.returncode == 1
    assert "the source has no stream EVIDENCE" in result.stderr


async def test_what_the_target_cannot_hold_is_listed_and_the_rest_copied(
    nats_server: NatsServer, store: EventStore, target_server: NatsServer, target: EventStore
) -> None:
    """An old store took any subject under rp.evidence.>: such a message is skipped, exit 1."""
    await _made_before_partitions(store)
    await _append(store, _spread(5))
    await raw_publish(nats_server.url, "rp.evidence.t1.user.42", b"NATS/1.0\r\n", b"{}")
    await _append(store, [evidence("after", entity="u7")])
    result = _migrate(nats_server.url, target_server.url, "--json")
    assert result.returncode == 1
    summary = _summary(result)
    assert [p["sequence"] for p in summary["skipped"]] == [6]
    assert "rp.evidence.t1.user.42" in summary["skipped"][0]["reason"]
    assert summary["copied"] == 6
    assert summary["ok"] is False
    text = _migrate(nats_server.url, target_server.url)
    assert text.returncode == 1
    assert "SKIPPED (not copied): sequence 6" in text.stderr
    assert "copied=0 already_present=6" in text.stdout
    await target.adopt_partitions()
    assert [r.event.id for r in await _all(target) if r.event] == [
        *(f"ev-{n}" for n in range(5)),
        "after",
    ]
    assert topology_config().partitions == 16


def _settings(url: str) -> Settings:
    return Settings(nats_url=url)


async def test_a_late_copy_of_a_killed_run_is_taken_as_present(
    nats_server: NatsServer,
    store: EventStore,
    target_server: NatsServer,
    target: EventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A copy landing after the next run looked: its own copy is fenced out, then matched."""
    await _append(store, _spread(5000))
    real = EventStore.append_in_order
    rounds: list[int] = []

    async def late_first(
        self: EventStore, copies: Sequence[Copy], *, after: int
    ) -> list[AppendResult | EventStoreError]:
        rounds.append(after)
        if len(rounds) == 2:
            landed = await real(self, copies[:3], after=after)
            assert all(isinstance(r, AppendResult) and not r.duplicate for r in landed)
        return await real(self, copies, after=after)

    monkeypatch.setattr(EventStore, "append_in_order", late_first)
    summary = await migrate(_settings(nats_server.url), _settings(target_server.url))
    assert (summary.copied, summary.already_present) == (4997, 3)
    assert len(rounds) == 3, "the late copies were matched, not sent again"
    await target.adopt_partitions()
    assert [r.event.id for r in await _all(target) if r.event] == [f"ev-{n}" for n in range(5000)]


async def test_another_writer_in_the_target_stops_the_copy(
    nats_server: NatsServer,
    store: EventStore,
    target_server: NatsServer,
    target: EventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Evidence appended to the target mid-copy by someone else: refused, never interleaved."""
    await _append(store, _spread(5000))
    real = EventStore.append_in_order
    rounds: list[int] = []

    async def interloper(
        self: EventStore, copies: Sequence[Copy], *, after: int
    ) -> list[AppendResult | EventStoreError]:
        rounds.append(after)
        if len(rounds) == 2:
            await self.append(evidence("not-from-the-source", entity="u9"))
        return await real(self, copies, after=after)

    monkeypatch.setattr(EventStore, "append_in_order", interloper)
    with pytest.raises(MigrateError, match="is not a copy of the source's"):
        await migrate(_settings(nats_server.url), _settings(target_server.url))
    held = int((await target.stream_state("EVIDENCE"))["messages"])
    assert held == rounds[1] + 1, "the copy stopped at the stranger's event"


async def test_the_target_may_have_credentials_of_its_own(
    nats_server: NatsServer, store: EventStore, tmp_path: Path
) -> None:
    """--to-user and RISKPIPE_TO_NATS_PASSWORD for a secured target; without them it says why."""
    await _append(store, _spread(4))
    config = tmp_path / "secured.conf"
    config.write_text('authorization { user: migrator, password: "Xq7-target-only-9f" }\n')
    secured = NatsServer(data_dir=tmp_path / "secured", config_file=config)
    secured.start()
    try:
        refused = _migrate(nats_server.url, secured.url)
        assert refused.returncode == 1
        assert "the target (--to)" in refused.stderr
        result = riskpipe(
            "--nats-url", nats_server.url, "migrate", "--to", secured.url,
            "--to-user", "migrator", "--json",
            env={"RISKPIPE_TO_NATS_PASSWORD": "Xq7-target-only-9f"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert _summary(result)["copied"] == 4
        assert "Xq7-target-only-9f" not in result.stdout + result.stderr
    finally:
        secured.kill()
