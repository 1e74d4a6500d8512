"""A real nats-server per test: port -1, JetStream, a temp store dir, stopped by PID."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["nats_server"]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port, stopped after the test."""
    server = NatsServer(data_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.kill()
