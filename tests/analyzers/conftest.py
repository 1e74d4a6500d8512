"""Fixtures for the analyzer tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support.reputation_server import ReputationServer

from analyzers import AnalyzerConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(scope="session")
def config() -> AnalyzerConfig:
    """The default analyzer config."""
    return AnalyzerConfig()


@pytest.fixture
async def reputation() -> AsyncIterator[ReputationServer]:
    """A scripted reputation service on a free loopback port, stopped after the test."""
    server = ReputationServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
