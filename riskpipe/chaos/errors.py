"""The errors of the chaos harness."""

from __future__ import annotations

from riskpipe.errors import RiskpipeError

__all__ = ["ChaosError", "HistoryError"]


class ChaosError(RiskpipeError):
    """Root of the chaos harness's errors."""


class HistoryError(ChaosError, ValueError):
    """A history file or op that is not what the harness writes (the line and why)."""
