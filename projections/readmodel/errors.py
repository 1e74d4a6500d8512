"""The error family of the SQL read model.

Every error raised by :mod:`projections.readmodel` derives from
:class:`ReadModelError`. The configuration errors (a bad URL, a schema from a
newer riskpipe) cannot be fixed by trying again; :class:`DatabaseUnavailableError`
can.
"""

from __future__ import annotations

__all__ = [
    "DatabaseUnavailableError",
    "DatabaseUrlError",
    "NoGenerationError",
    "ReadModelError",
    "RebuildNeededError",
    "SchemaTooNewError",
    "TrackingConflictError",
]


class ReadModelError(Exception):
    """Root of every error raised by the SQL read model."""


class DatabaseUrlError(ReadModelError, ValueError):
    """The database URL cannot be used: unparsable, or a driver riskpipe does not support."""

    def __init__(self, shown: str, reason: str) -> None:
        self.shown = shown
        self.reason = reason
        super().__init__(f"database URL {shown}: {reason}")


class DatabaseUnavailableError(ReadModelError):
    """The database did not answer, or refused the connection (down, wrong host, login)."""

    def __init__(self, shown: str, reason: str) -> None:
        self.shown = shown
        self.reason = reason
        super().__init__(f"cannot reach the database at {shown}: {reason}")


class SchemaTooNewError(ReadModelError):
    """The database was set up by a newer riskpipe: this one must not write into it."""

    def __init__(self, what: str, found: int, known: int) -> None:
        self.what = what
        self.found = found
        self.known = known
        super().__init__(
            f"the read model's {what} is at version {found}, this riskpipe knows up to"
            f" {known}: upgrade riskpipe (or point RISKPIPE_DATABASE_URL at another database)"
        )


class RebuildNeededError(ReadModelError):
    """The active generation's tables have an older layout than this riskpipe writes."""

    def __init__(self, generation: int, layout: int, current: int) -> None:
        self.generation = generation
        self.layout = layout
        self.current = current
        super().__init__(
            f"generation {generation} of the read model has table layout {layout}, this"
            f" riskpipe writes layout {current}: run `riskpipe readmodel rebuild`"
        )


class NoGenerationError(ReadModelError):
    """Nothing has been built yet: no generation is active."""

    def __init__(self) -> None:
        super().__init__(
            "the read model has not been built yet: run `riskpipe readmodel run` (or rebuild)"
        )


class TrackingConflictError(ReadModelError):
    """Another process moved the tracking position first: the batch was rolled back whole."""

    def __init__(self, stream: str, expected: int, found: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.found = found
        super().__init__(
            f"tracking of {stream} is at {found}, not {expected}: another process applied"
            " those events; nothing of this batch was written"
        )
