"""The error family of the riskpipe commands.

Every error raised by :mod:`riskpipe` itself derives from :class:`RiskpipeError`.
They are start-up errors: a command reports one as a single line and exits
non-zero, since retrying in the same process cannot fix a bad setting or a
port that another process holds.
"""

from __future__ import annotations

__all__ = ["HttpServerError", "RiskpipeError", "SettingsError"]


class RiskpipeError(Exception):
    """Root of every error raised by the riskpipe commands."""


class SettingsError(RiskpipeError, ValueError):
    """``RISKPIPE_*`` environment variables or flags that cannot be used."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class HttpServerError(RiskpipeError):
    """The HTTP endpoints cannot be served (the address is taken, not allowed, or not local)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(f"cannot serve HTTP on {host}:{port}: {reason}")
