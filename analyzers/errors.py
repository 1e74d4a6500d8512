"""The error family of the analyzer.

Every error raised by :mod:`analyzers` derives from :class:`AnalyzerError`.
Callers branch on class, never on message text:

- :class:`TransientAnalyzerError` and its subclasses may succeed later.
  :class:`DependencyUnavailable` (the enrichment breaker is open) is one of
  them, so catch it *before* its parent: the right reaction is to pause, not to
  retry the message at once.
- Everything else is permanent. :class:`InvalidEvidenceError` and
  :class:`InvalidConfigError` are also :class:`ValueError`, so a caller that
  treats ``ValueError`` as "bad data" classifies them correctly.
"""

from __future__ import annotations

__all__ = [
    "AnalyzerError",
    "DependencyUnavailable",
    "EnrichmentRejectedError",
    "EnrichmentResponseError",
    "EnrichmentTransientError",
    "EvidenceAlreadyAppliedError",
    "InvalidConfigError",
    "InvalidEvidenceError",
    "TransientAnalyzerError",
]


class AnalyzerError(Exception):
    """Root of every error raised by the analyzer."""


class TransientAnalyzerError(AnalyzerError):
    """The operation may succeed if tried again later."""


class InvalidEvidenceError(AnalyzerError, ValueError):
    """Evidence, or an evidence log, that cannot be scored. Permanent."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class InvalidConfigError(AnalyzerError, ValueError):
    """An analyzer configuration that cannot be used. Permanent."""

    def __init__(self, source: str, problems: list[str], *, what: str = "analyzer config") -> None:
        self.source = source
        self.problems = problems
        self.what = what
        super().__init__(f"invalid {what} {source}: " + "; ".join(problems))


class EvidenceAlreadyAppliedError(AnalyzerError):
    """The state already includes this evidence (its stream sequence is not new)."""

    def __init__(self, sequence: int, last_sequence: int) -> None:
        self.sequence = sequence
        self.last_sequence = last_sequence
        super().__init__(
            f"evidence at sequence {sequence} is already applied"
            f" (the state is at sequence {last_sequence})"
        )


class EnrichmentTransientError(TransientAnalyzerError):
    """The enrichment service kept failing transiently until the retries ran out."""

    def __init__(self, provider: str, attempts: int, reason: str) -> None:
        self.provider = provider
        self.attempts = attempts
        self.reason = reason
        super().__init__(f"enrichment by {provider} failed after {attempts} attempts: {reason}")


class DependencyUnavailable(TransientAnalyzerError):  # noqa: N818 - name fixed by the projection worker's contract
    """The enrichment circuit breaker is open: the call was not attempted.

    ``retry_after`` is how many seconds remain before the breaker lets a trial
    call through (0 when it already would).
    """

    def __init__(self, provider: str, retry_after: float) -> None:
        self.provider = provider
        self.retry_after = retry_after
        super().__init__(
            f"enrichment by {provider} is unavailable (circuit open),"
            f" next trial in {retry_after:.3f}s"
        )


class EnrichmentRejectedError(AnalyzerError):
    """The enrichment service refused the request (a 4xx other than 429). Permanent."""

    def __init__(self, provider: str, status: int) -> None:
        self.provider = provider
        self.status = status
        super().__init__(f"enrichment by {provider} rejected the request with HTTP {status}")


class EnrichmentResponseError(AnalyzerError):
    """The enrichment service answered with a body that breaks its contract. Permanent."""

    def __init__(self, provider: str, problem: str) -> None:
        self.provider = provider
        self.problem = problem
        super().__init__(f"enrichment by {provider} returned an invalid response: {problem}")
