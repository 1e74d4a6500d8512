"""Blue/green rebuilds, a follower that moves to the new generation, and schemas it refuses."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, update
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker
from support.readmodel import rows

from projections.readmodel import (
    LAYOUT,
    SCHEMA_VERSION,
    Database,
    Item,
    ReadModel,
    ReadModelReader,
    RebuildNeededError,
    SchemaTooNewError,
    Source,
)
from projections.readmodel._tables import GENERATIONS, SCHEMA_VERSIONS
from riskpipe.readmodel import read_model, readmodel_sources
from riskpipe.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import EventStore
    from projections.readmodel import Applied, GenerationTables
    from riskpipe.server import NatsServer


async def _scored(store: EventStore, url: str, tag: str, count: int = 10) -> int:
    """``count`` evidence events of t1/e1..e3, scored by a real worker; RISK's last sequence."""
    events = [evidence(f"{tag}-{i}", entity=f"e{i % 3}", minute=i) for i in range(count)]
    assert not [r for r in await store.append_many(events) if isinstance(r, Exception)]
    await run_worker(store, url)
    return int((await store.stream_state("RISK"))["last_seq"])


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The read model's database, disposed of after the test."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def _position(registry: CollectorRegistry, seq: int) -> None:
    """Wait until the follower's position in RISK is ``seq``, by its gauge."""
    gauge = ("riskpipe_readmodel_position", {"stream": "RISK"})
    async with asyncio.timeout(30):
        while registry.get_sample_value(*gauge) != seq:  # noqa: ASYNC110 - a gauge, no event
            await asyncio.sleep(0.05)


def _settings(nats_server: NatsServer, database_url: str) -> Settings:
    return Settings(
        nats_url=nats_server.url,
        database_url=database_url,
        readmodel_batch=4,
        readmodel_poll_seconds=0.05,
    )


async def test_readers_see_the_old_generation_until_the_switch(
    store: EventStore, nats_server: NatsServer, db: Database, database_url: str
) -> None:
    """While a rebuild fills generation 2, readers get generation 1; then 2, and 1 is gone."""
    await _scored(store, nats_server.url, "a")
    settings = _settings(nats_server, database_url)
    await read_model(store, db, settings).run(asyncio.Event(), until_idle=True)
    before = await rows(database_url)
    reader = ReadModelReader(db)
    seen: list[int] = []

    def watching(source: Source) -> Source:
        async def apply(conn: AsyncConnection, tables: GenerationTables, item: Item) -> Applied:
            if not seen:  # in the middle of building generation 2, from another connection
                found = await reader.latest_assessment(tenants=["t1"], tenant="t1", entity="e1")
                assert found is not None
                seen.append(tables.generation)
                assert await rows(database_url) == before
            return await source.apply(conn, tables, item)

        return Source(source.name, source.stream, apply)

    model = ReadModel(db, store, [watching(s) for s in readmodel_sources(store, settings)])
    result = await model.rebuild()
    assert seen == [2]
    assert result is not None
    assert (result.generation, result.replaced) == (2, 1)
    assert await rows(database_url) == before
    async with db.read() as conn:
        names = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
    assert not [n for n in names if n.endswith("_g1")]
    assert {"rm_cases_g2", "rm_tracking_g2"} <= set(names)


async def test_a_follower_moves_to_the_rebuilt_generation(
    store: EventStore, nats_server: NatsServer, db: Database, database_url: str
) -> None:
    """A running ``run`` writes its next batch into the generation a rebuild switched to."""
    first = await _scored(store, nats_server.url, "a")
    settings = _settings(nats_server, database_url)
    registry = CollectorRegistry()
    follower = read_model(store, db, settings, registry)
    stop = asyncio.Event()
    running = asyncio.create_task(follower.run(stop))
    try:
        await _position(registry, first)
        other = Database(database_url)
        try:
            assert await read_model(store, other, settings).rebuild() is not None
        finally:
            await other.dispose()
        last = await _scored(store, nats_server.url, "b")
        await _position(registry, last)
    finally:
        stop.set()
        await running
    assert registry.get_sample_value("riskpipe_readmodel_generation") == 2
    assert ("riskpipe", "RISK", last) in (await rows(database_url))["tracking"]
    incremental = await rows(database_url)
    assert await read_model(store, db, settings).rebuild() is not None
    assert await rows(database_url) == incremental


async def test_a_schema_from_a_newer_riskpipe_is_refused(
    store: EventStore, nats_server: NatsServer, db: Database, database_url: str
) -> None:
    """A control schema or a table layout newer than this riskpipe's: no writes, a clear error."""
    settings = _settings(nats_server, database_url)
    model = read_model(store, db, settings)
    await model.run(asyncio.Event(), until_idle=True)
    async with db.write() as conn:
        await conn.execute(update(GENERATIONS).values(layout=LAYOUT + 1))
    with pytest.raises(SchemaTooNewError, match="table layout is at version 2"):
        await model.run(asyncio.Event(), until_idle=True)
    with pytest.raises(SchemaTooNewError):
        await ReadModelReader(db).list_cases(tenants=["t1"])
    async with db.write() as conn:
        await conn.execute(update(GENERATIONS).values(layout=LAYOUT))
        await conn.execute(
            insert(SCHEMA_VERSIONS).values(
                version=SCHEMA_VERSION + 1, description="from the future", applied_at=_now()
            )
        )
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_DATABASE_URL": database_url}
    refused = riskpipe("readmodel", "run", "--until-idle", "--no-http", env=env)
    assert refused.returncode == 1
    assert "control schema is at version 2, this riskpipe knows up to 1" in refused.stderr
    assert "upgrade riskpipe" in refused.stderr


async def test_an_older_layout_asks_for_a_rebuild_which_fixes_it(
    store: EventStore, nats_server: NatsServer, db: Database, database_url: str
) -> None:
    """Tables of an older layout: ``run`` and readers ask for a rebuild; after it, all is well."""
    last = await _scored(store, nats_server.url, "a", count=4)
    settings = _settings(nats_server, database_url)
    await read_model(store, db, settings).run(asyncio.Event(), until_idle=True)
    async with db.write() as conn:
        await conn.execute(update(GENERATIONS).values(layout=LAYOUT - 1))
    with pytest.raises(RebuildNeededError, match="run `riskpipe readmodel rebuild`"):
        await read_model(store, db, settings).run(asyncio.Event(), until_idle=True)
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_DATABASE_URL": database_url}
    assert riskpipe("readmodel", "rebuild", env=env).returncode == 0
    status = riskpipe("readmodel", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert '"generation": 2' in status.stdout
    assert f'"last_seq": {last}, "position": {last}' in status.stdout


def _now() -> object:
    from datetime import UTC, datetime  # noqa: PLC0415 - one use

    return datetime.now(UTC)
