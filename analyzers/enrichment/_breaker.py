"""The circuit breaker's observer: a log line and metric updates per state change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pybreaker
import structlog

if TYPE_CHECKING:
    from analyzers.enrichment._metrics import EnrichmentMetrics

__all__ = ["BreakerObserver", "BreakerState", "state_name"]

BreakerState = Literal["closed", "half_open", "open"]

_NAMES: dict[str, BreakerState] = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_HALF_OPEN: "half_open",
    pybreaker.STATE_OPEN: "open",
}
_GAUGE = {"closed": 0, "half_open": 1, "open": 2}
_log = structlog.get_logger(__name__)


def state_name(pybreaker_state: str) -> BreakerState:
    """Our name for one of pybreaker's state names."""
    return _NAMES[pybreaker_state]


class BreakerObserver(pybreaker.CircuitBreakerListener):
    """Logs every breaker transition and mirrors it in the metrics."""

    def __init__(self, provider: str, metrics: EnrichmentMetrics) -> None:
        self._provider = provider
        self._metrics = metrics

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        """Record a transition to ``new_state``."""
        entered = state_name(new_state.name)
        self._metrics.breaker_state.set(_GAUGE[entered])
        self._metrics.transitions.labels(to=entered).inc()
        log = _log.warning if entered == "open" else _log.info
        log(
            "enrichment_breaker_state_changed",
            provider=self._provider,
            from_state=None if old_state is None else state_name(old_state.name),
            to_state=entered,
            consecutive_failures=cb.fail_counter,
        )
