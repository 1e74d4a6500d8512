"""An :class:`~analyzers.Enricher` backed by an HTTP reputation service.

Each attempt runs inside the circuit breaker and under a timeout; transient
failures (timeouts, connection errors, 5xx, 429) are retried with exponential
backoff and jitter; the breaker counts every failed attempt and, once open,
makes calls fail at once with :class:`~analyzers.errors.DependencyUnavailable`.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import httpx
import pybreaker
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from analyzers._problems import describe
from analyzers._signal import EnrichmentSignal
from analyzers.enrichment._breaker import BreakerObserver, BreakerState, state_name
from analyzers.enrichment._metrics import EnrichmentMetrics
from analyzers.errors import (
    AnalyzerError,
    DependencyUnavailable,
    EnrichmentRejectedError,
    EnrichmentResponseError,
    EnrichmentTransientError,
)

if TYPE_CHECKING:
    from types import TracebackType

    from prometheus_client import CollectorRegistry
    from tenacity import RetryCallState

    from analyzers._evidence import Evidence
    from analyzers.enrichment._settings import EnricherSettings

__all__ = ["DELIVERY_HEADER", "HttpEnricher", "delivery"]

_log = structlog.get_logger(__name__)
_TOO_MANY_REQUESTS = 429
_SERVER_ERROR = 500
_OK = 200
DELIVERY_HEADER = "Riskpipe-Delivery"
"""The request header that says which delivery of the message being handled a call serves."""
_DELIVERY: ContextVar[int | None] = ContextVar("riskpipe_enrichment_delivery", default=None)
_OUTCOMES: dict[type[AnalyzerError], str] = {
    DependencyUnavailable: "unavailable",
    EnrichmentTransientError: "transient",
    EnrichmentRejectedError: "rejected",
    EnrichmentResponseError: "invalid",
}


class delivery:  # noqa: N801 - used like a function: ``with delivery(n):``
    """Say in every request made inside the block that it serves delivery ``number``.

    A worker handles a message once per delivery: the first is 1, and each
    redelivery after a failure (or a fault) counts up. Requests carry the
    number as :data:`DELIVERY_HEADER`, so the service can tell a redelivery
    from a new question. Outside such a block no header is sent.
    """

    __slots__ = ("_number", "_token")

    def __init__(self, number: int) -> None:
        self._number = number

    def __enter__(self) -> None:
        self._token = _DELIVERY.set(self._number)

    def __exit__(self, *_exc: object) -> None:
        _DELIVERY.reset(self._token)


class _RetryableError(Exception):
    """One attempt failed in a way a later attempt may not."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    modifier: float = Field(ge=-1.0, le=1.0, strict=True)


def _not_a_failure(exc: BaseException) -> bool:
    """Whether the breaker should ignore ``exc``: the service answered, or we were cancelled."""
    # pybreaker has no neutral outcome: excluded errors count as successes. A
    # cancellation must propagate unchanged, and counting it as a failure could
    # replace it with CircuitBreakerError when that failure trips the breaker.
    return isinstance(exc, _ANSWERED) or not isinstance(exc, Exception)


_ANSWERED = (EnrichmentRejectedError, EnrichmentResponseError)


class HttpEnricher:
    """Fetches a risk modifier per entity from an HTTP service (see docs/analyzer.md).

    Metrics are created on ``registry``. If ``client`` is given the caller owns
    it; otherwise the enricher creates one and :meth:`aclose` closes it.
    """

    def __init__(
        self,
        settings: EnricherSettings,
        *,
        registry: CollectorRegistry,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = EnrichmentMetrics.register(registry)
        self._client = client if client is not None else httpx.AsyncClient()
        self._owns_client = client is None
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max,
            reset_timeout=settings.reset_timeout_seconds,
            exclude=[_not_a_failure],
            listeners=[BreakerObserver(settings.provider, self._metrics)],
            state_storage=self._storage,
            name=settings.provider,
        )
        self._metrics.breaker_state.set(0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if the enricher created it."""
        if self._owns_client:
            await self._client.aclose()

    @property
    def breaker_state(self) -> BreakerState:
        """``closed``, ``open`` (calls fail fast) or ``half_open`` (the next call is a trial).

        An open breaker whose reset timeout has passed reads ``half_open``: it
        lets the next call through, so a paused caller can resume.
        """
        state = state_name(self._storage.state)
        if state == "open" and self.retry_after() <= 0.0:
            return "half_open"
        return state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when not open)."""
        opened_at = self._storage.opened_at
        if self._storage.state != pybreaker.STATE_OPEN or opened_at is None:
            return 0.0
        reopens = opened_at + timedelta(seconds=self.settings.reset_timeout_seconds)
        return max(0.0, (reopens - datetime.now(UTC)).total_seconds())

    async def enrich(self, tenant: str, entity: str, evidence: Evidence) -> EnrichmentSignal:
        """Ask the service for ``entity``'s modifier in the light of ``evidence``.

        Raises:
            DependencyUnavailable: the breaker is open, or this call's failure opened it.
            EnrichmentTransientError: every attempt failed transiently.
            EnrichmentRejectedError: the service answered with a 4xx other than 429.
            EnrichmentResponseError: the service's answer breaks the contract.
        """
        try:
            signal = await self._with_retries(_request(tenant, entity, evidence))
        except AnalyzerError as exc:
            self._metrics.calls.labels(outcome=_outcome(exc)).inc()
            raise
        self._metrics.calls.labels(outcome="success").inc()
        return signal

    async def _with_retries(self, body: dict[str, Any]) -> EnrichmentSignal:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self.settings.backoff_seconds,
                max=self.settings.backoff_max_seconds,
                jitter=self.settings.jitter_seconds,
            ),
            retry=retry_if_exception_type(_RetryableError),
            before_sleep=self._on_retry,
            reraise=True,
        )
        try:
            signal: EnrichmentSignal = await retrying(self._attempt, body)
        except _RetryableError as exc:
            provider, attempts = self.settings.provider, self.settings.max_attempts
            raise EnrichmentTransientError(provider, attempts, exc.reason) from exc
        return signal

    async def _attempt(self, body: dict[str, Any]) -> EnrichmentSignal:
        try:
            with self._breaker.calling():
                return self._read(await self._post(body))
        except pybreaker.CircuitBreakerError as exc:
            raise DependencyUnavailable(self.settings.provider, self.retry_after()) from exc

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        timeout = self.settings.timeout_seconds
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await self._client.post(
                    self.settings.url, json=body, timeout=timeout, headers=_headers()
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _RetryableError(f"timed out after {timeout}s") from exc
        except httpx.TransportError as exc:
            raise _RetryableError(f"connection failed ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            raise EnrichmentResponseError(self.settings.provider, str(exc)) from exc
        finally:
            self._metrics.latency.observe(time.perf_counter() - started)

    def _read(self, response: httpx.Response) -> EnrichmentSignal:
        status = response.status_code
        if status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR:
            raise _RetryableError(f"HTTP {status}")
        if status != _OK:
            raise EnrichmentRejectedError(self.settings.provider, status)
        try:
            reply = _Reply.model_validate_json(response.content)
        except ValidationError as exc:
            problems = "; ".join(describe(exc, whole="body"))
            raise EnrichmentResponseError(self.settings.provider, problems) from exc
        return EnrichmentSignal(provider=self.settings.provider, modifier=reply.modifier)

    def _on_retry(self, retry_state: RetryCallState) -> None:
        self._metrics.retries.inc()
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        _log.info(
            "enrichment_retry",
            provider=self.settings.provider,
            attempt=retry_state.attempt_number,
            reason=getattr(failure, "reason", repr(failure)),
            wait_seconds=retry_state.upcoming_sleep,
        )


def _outcome(exc: AnalyzerError) -> str:
    return next(outcome for kind, outcome in _OUTCOMES.items() if isinstance(exc, kind))


def _headers() -> dict[str, str] | None:
    number = _DELIVERY.get()
    return None if number is None else {DELIVERY_HEADER: str(number)}


def _request(tenant: str, entity: str, evidence: Evidence) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "entity": entity,
        "evidence": {
            "id": evidence.event_id,
            "source": evidence.source,
            "pattern": evidence.pattern,
            "severity": evidence.severity.value,
            "confidence": evidence.confidence,
            "observed_at": evidence.observed_at.isoformat(),
        },
    }
