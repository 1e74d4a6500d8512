"""A real riskpipe in your own tests: a pytest plugin (loaded by pytest through an entry point).

Fixtures:

- ``riskpipe_server``: a :class:`RiskpipeServer`, a real ``nats-server`` with
  JetStream on a free loopback port, provisioned as ``riskpipe init`` does,
  with its store in the test's temporary directory; killed by PID afterwards.
- ``riskpipe_producer``: a :class:`~riskpipe.client.SyncProducer` connected to it.

``riskpipe_server.score()`` runs the risk worker until nothing is pending and
returns every assessment recorded so far. Nothing here needs pytest-asyncio:
the fixtures and ``score`` work in plain and in ``async`` tests alike.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from eventstore import EventStore
from projections.risk import ASSESSED
from riskpipe.client import SyncProducer
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator
    from pathlib import Path

    from eventstore import CloudEvent

__all__ = ["RiskpipeServer", "Scored", "riskpipe_producer", "riskpipe_server", "started"]

T = TypeVar("T")
_WORKER_SECONDS = 120


@dataclass(frozen=True, slots=True)
class Scored:
    """One recorded assessment: whom it rates, how, and after which evidence."""

    tenant: str
    entity: str
    level: str
    score: float
    evidence_id: str
    evidence_source: str
    sequence: int
    """The assessment's own sequence in the risk stream."""
    data: dict[str, Any]
    """The whole ``riskpipe.risk.assessed.v1`` data: contributions, state, recommendations."""


class RiskpipeServer:
    """A provisioned riskpipe event store on a real, private ``nats-server``."""

    def __init__(self, server: NatsServer, home: Path) -> None:
        self.server = server
        self.home = home

    @property
    def url(self) -> str:
        """The server's ``nats://127.0.0.1:<port>`` URL."""
        return self.server.url

    def producer(self) -> SyncProducer:
        """A new blocking producer connected to this server (close it, or use ``with``)."""
        return SyncProducer.connect(self.url)

    def score(self) -> list[Scored]:
        """Run the risk worker until nothing is pending; every assessment recorded so far.

        Fails the test when the worker fails, with the worker's output.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKPIPE_")}
        env |= {
            "RISKPIPE_NATS_URL": self.url,
            "RISKPIPE_DATA_DIR": str(self.home),
            "RISKPIPE_FETCH_TIMEOUT": "0.2",
            "RISKPIPE_LOG_LEVEL": "warning",
        }
        ran = subprocess.run(
            [sys.executable, "-m", "riskpipe", "worker", "--until-idle", "--no-http"],
            env=env,
            capture_output=True,
            text=True,
            timeout=_WORKER_SECONDS,
            check=False,
        )
        if ran.returncode != 0:
            pytest.fail(f"riskpipe worker exited {ran.returncode}:\n{ran.stderr}", pytrace=False)
        return _in_thread(self._assessments())

    async def _assessments(self) -> list[Scored]:
        async with await _connect(self.url) as store:
            stream = store.config.stream_for("risk")
            return [
                _scored(recorded.event, recorded.sequence)
                async for recorded in store.read_all(stream=stream)
                if recorded.event is not None and recorded.event.type == ASSESSED
            ]


def _scored(event: CloudEvent, sequence: int) -> Scored:
    data: dict[str, Any] = event.data or {}
    return Scored(
        tenant=event.tenant,
        entity=event.subject,
        level=data["assessment"]["level"],
        score=data["assessment"]["score"],
        evidence_id=data["evidence"]["id"],
        evidence_source=data["evidence"]["source"],
        sequence=sequence,
        data=data,
    )


async def _connect(url: str) -> EventStore:
    return await EventStore.connect(
        url, schemas=build_schemas(), config=topology_config(), name="riskpipe-testing", timeout=5.0
    )


async def _provision(url: str) -> None:
    async with await _connect(url) as store:
        report = await store.provision()
        if not report.ok:
            pytest.fail(f"riskpipe init found other streams: {report.drifted}", pytrace=False)


def _in_thread(call: Coroutine[Any, Any, T]) -> T:
    """Run ``call`` on a fresh event loop in another thread: safe inside a running loop too."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(call))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="riskpipe-testing")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


@contextmanager
def started(home: Path) -> Iterator[RiskpipeServer]:
    """A provisioned riskpipe server with its store under ``home``, killed on leaving."""
    server = NatsServer(data_dir=home / "nats")
    server.start()
    try:
        _in_thread(_provision(server.url))
        yield RiskpipeServer(server, home)
    finally:
        server.kill()


@pytest.fixture
def riskpipe_server(tmp_path: Path) -> Iterator[RiskpipeServer]:
    """A provisioned riskpipe on a real nats-server of its own, stopped after the test."""
    with started(tmp_path / "riskpipe") as server:
        yield server


@pytest.fixture
def riskpipe_producer(riskpipe_server: RiskpipeServer) -> Iterator[SyncProducer]:
    """A blocking producer connected to ``riskpipe_server``, closed after the test."""
    with riskpipe_server.producer() as producer:
        yield producer
