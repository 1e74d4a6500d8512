"""Fixtures for the analyzer tests."""

from __future__ import annotations

import pytest

from analyzers import AnalyzerConfig


@pytest.fixture(scope="session")
def config() -> AnalyzerConfig:
    """The default analyzer config."""
    return AnalyzerConfig()
