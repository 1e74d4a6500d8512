"""Fixtures of the learning loop's tests: the CLI on a provisioned server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

if TYPE_CHECKING:
    from eventstore import EventStore
    from riskpipe.server import NatsServer


@pytest.fixture
def cli(nats_server: NatsServer, store: EventStore) -> CliRunner:  # noqa: ARG001 - provisioned
    """A runner on a provisioned server, acting as ``olga`` unless told otherwise."""
    return CliRunner(
        env={
            "RISKPIPE_NATS_URL": nats_server.url,
            "RISKPIPE_LOG_LEVEL": "error",
            "RISKPIPE_ACTOR": "olga",
        }
    )
