"""A chaos run's security probes: what would purge, expire or multiply evidence is refused.

With the deployment's users (deploy/nats/auth.conf), what producer credentials
must not do (write an assessment or a checkpoint, purge evidence) is denied by
the server; on open servers the same probes are reported as taken.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from riskpipe.chaos import ChaosOptions
from riskpipe.chaos._harness import _FORBIDDEN, _PROBES, _evidence, _Run, _try

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventstore import EventStore

AUTH = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


@pytest.mark.parametrize(("name", "headers"), _PROBES, ids=[name for name, _ in _PROBES])
async def test_each_probe_is_refused_and_stores_nothing(
    store: EventStore, name: str, headers: dict[str, str]
) -> None:
    """By the store's API before sending, and by the stream when sent raw."""
    event = _evidence("probe", 1, random.Random(1), 5)  # noqa: S311 - test data
    outcome, how = await _try(store, event, headers)
    assert outcome == "ok", (name, how)
    assert how.startswith("refused by the stream")
    assert await store.count("EVIDENCE", "rp.evidence.>") == 0


async def test_a_header_the_stream_takes_is_reported(store: EventStore) -> None:
    """A probe must be able to fail: one the stream has no reason to refuse is ``fail``."""
    event = _evidence("probe", 2, random.Random(2), 5)  # noqa: S311 - test data
    assert (await _try(store, event, {"X-Harmless": "1"}))[0] == "fail"


async def _started(tmp_path: Path, auth: Path | None) -> AsyncIterator[_Run]:
    run = _Run(ChaosOptions("duplicate", 5, 1, tmp_path, auth=auth))
    await asyncio.to_thread(run.servers.start)
    try:
        admin = await run.connect("provisioner")
        await admin.provision()
        await admin.close()
        yield run
    finally:
        run.servers.stop()
        run.history.close()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[_Run]:
    """A run's server with the deployment's users, provisioned by its admin."""
    async for run in _started(tmp_path, AUTH):
        yield run


@pytest.fixture
async def open_run(tmp_path: Path) -> AsyncIterator[_Run]:
    """A run's server without users: everyone may do anything."""
    async for run in _started(tmp_path, None):
        yield run


@pytest.mark.parametrize("name", _FORBIDDEN)
async def test_producer_credentials_are_denied(secured: _Run, name: str) -> None:
    """Denied by the server's permissions, not only by what a stream allows."""
    event = _evidence("probe", 3, random.Random(3), 5)  # noqa: S311 - test data
    outcome, how = await secured.probe_once(name, event)
    assert (outcome, how.split(":")[0]) == ("ok", "permission denied"), how
    admin = await secured.connect("checker")
    try:
        assert await admin.count("RISK", "rp.risk.>") == 0
    finally:
        await admin.close()


async def test_the_header_probes_run_as_the_producer(secured: _Run) -> None:
    """The producer may publish evidence: the stream itself refuses the headers."""
    event = _evidence("probe", 4, random.Random(4), 5)  # noqa: S311 - test data
    outcome, how = await secured.probe_once(_PROBES[0][0], event)
    assert outcome == "ok"
    assert how.startswith("refused by the stream"), how


async def test_forbidden_probes_are_reported_when_taken(open_run: _Run) -> None:
    """Without users, an assessment and a checkpoint are written: each probe says so."""
    event = _evidence("probe", 5, random.Random(5), 5)  # noqa: S311 - test data
    outcomes = {name: await open_run.probe_once(name, event) for name in _FORBIDDEN}
    assert outcomes["producer-publishes-assessment"][0] == "fail"
    assert outcomes["producer-writes-checkpoint"][0] == "fail"
    # the evidence stream denies purges to everyone: history cannot be erased
    purge = outcomes["producer-purges-evidence"]
    assert purge[0] == "ok"
    assert purge[1].startswith("refused by the stream"), purge
