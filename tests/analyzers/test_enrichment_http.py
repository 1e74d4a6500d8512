"""The HTTP enricher against a real local service: retries, timeouts, breaker, metrics, logs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from scoring_strategies import make_evidence
from support.reputation_server import DROP, HANG, Reply, ReputationServer

from analyzers import (
    DependencyUnavailable,
    Enricher,
    EnrichmentRejectedError,
    EnrichmentResponseError,
    EnrichmentSignal,
    EnrichmentTransientError,
    EntityRiskState,
    Severity,
    TransientAnalyzerError,
    assess,
)
from analyzers.enrichment import EnricherSettings, HttpEnricher, delivery

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from analyzers import AnalyzerConfig

EVIDENCE = make_evidence(0, pattern="impossible_travel", severity=Severity.HIGH, sequence=9)
FAST = {"backoff_seconds": 0.001, "backoff_max_seconds": 0.005, "jitter_seconds": 0.001}


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh metrics registry for one test."""
    return CollectorRegistry()


@pytest.fixture
async def connect(reputation: ReputationServer, registry: CollectorRegistry) -> AsyncIterator[Any]:
    """Make enrichers for the test's service with the given settings; close them after."""
    made: list[HttpEnricher] = []

    def make(**settings: Any) -> HttpEnricher:
        enricher = HttpEnricher(
            EnricherSettings(url=reputation.url, **{**FAST, **settings}), registry=registry
        )
        made.append(enricher)
        return enricher

    yield make
    for enricher in made:
        await enricher.aclose()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The current value of one sample, 0 when absent."""
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_healthy_service_gives_a_signal(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """A 200 reply becomes a signal; the request carries tenant, entity and evidence."""
    enricher = connect()
    signal = await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert signal == EnrichmentSignal(provider="reputation", modifier=0.25)
    assert reputation.requests == [
        {
            "tenant": "acme",
            "entity": "acct-42",
            "evidence": {
                "id": EVIDENCE.event_id,
                "source": "idp",
                "pattern": "impossible_travel",
                "severity": "high",
                "confidence": 1.0,
                "observed_at": "2024-05-01T00:00:00+00:00",
            },
        }
    ]
    assert sample(registry, "riskpipe_enrichment_calls_total", outcome="success") == 1
    assert sample(registry, "riskpipe_enrichment_latency_seconds_count") == 1
    assert sample(registry, "riskpipe_enrichment_breaker_state") == 0
    assert enricher.breaker_state == "closed"


async def test_a_call_inside_a_delivery_names_it_in_a_header(
    connect: Any, reputation: ReputationServer
) -> None:
    """``Riskpipe-Delivery`` carries the delivery number on every attempt, and only inside one."""
    reputation.script(Reply(status=503), Reply())
    enricher = connect(max_attempts=2)
    with delivery(3):
        await enricher.enrich("acme", "acct-42", EVIDENCE)
    await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert reputation.deliveries == ["3", "3", None]


async def test_the_signal_feeds_a_pure_assessment(
    connect: Any, reputation: ReputationServer, config: AnalyzerConfig
) -> None:
    """A fetched signal is passed to assess, which records it in the assessment."""
    reputation.script(Reply(body=b'{"modifier": -0.5, "reason": "known good"}'))
    enricher: Enricher = connect()
    signal = await enricher.enrich("acme", "acct-42", EVIDENCE)
    plain, _ = assess(EntityRiskState.initial(), EVIDENCE, config=config)
    enriched, _ = assess(EntityRiskState.initial(), EVIDENCE, config=config, enrichment=signal)
    assert enriched.enrichment == signal
    assert enriched.score == pytest.approx(plain.score * 0.5)


async def test_transient_failures_are_retried_until_success(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """A 503, a 429 and a dropped connection are retried; the fourth attempt succeeds."""
    reputation.script(Reply(503, b"busy"), Reply(429, b"slow down"), DROP, Reply())
    enricher = connect(max_attempts=4)
    with structlog.testing.capture_logs() as logs:
        signal = await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert signal.modifier == 0.25
    assert len(reputation.requests) == 4
    assert sample(registry, "riskpipe_enrichment_retries_total") == 3
    assert sample(registry, "riskpipe_enrichment_calls_total", outcome="success") == 1
    retries = [entry for entry in logs if entry["event"] == "enrichment_retry"]
    assert [entry["reason"] for entry in retries] == [
        "HTTP 503",
        "HTTP 429",
        "connection failed (RemoteProtocolError)",
    ]


async def test_exhausted_retries_raise_a_transient_error(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """Always 503: after max_attempts the call raises EnrichmentTransientError."""
    reputation.script(Reply(503, b"down"))
    enricher = connect(max_attempts=3)
    with pytest.raises(EnrichmentTransientError) as caught:
        await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert (caught.value.attempts, caught.value.reason) == (3, "HTTP 503")
    assert isinstance(caught.value, TransientAnalyzerError)
    assert not isinstance(caught.value, DependencyUnavailable)
    assert len(reputation.requests) == 3
    assert sample(registry, "riskpipe_enrichment_calls_total", outcome="transient") == 1
    assert enricher.breaker_state == "closed"


async def test_a_hanging_service_times_out_each_attempt(
    connect: Any, reputation: ReputationServer
) -> None:
    """A service that never answers costs one timeout per attempt, then a transient error."""
    reputation.script(HANG)
    enricher = connect(timeout_seconds=0.2, max_attempts=2)
    async with asyncio.timeout(5):
        with pytest.raises(EnrichmentTransientError, match=r"timed out after 0\.2s"):
            await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert len(reputation.requests) == 2


async def test_a_4xx_is_rejected_without_retry_or_tripping(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """A 404 is permanent: one request, no retry, and the breaker stays closed."""
    reputation.script(Reply(404, b"{}"))
    enricher = connect(fail_max=1)
    for _ in range(2):
        with pytest.raises(EnrichmentRejectedError) as caught:
            await enricher.enrich("acme", "acct-42", EVIDENCE)
        assert caught.value.status == 404
    assert len(reputation.requests) == 2
    assert enricher.breaker_state == "closed"
    assert sample(registry, "riskpipe_enrichment_calls_total", outcome="rejected") == 2
    assert sample(registry, "riskpipe_enrichment_retries_total") == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"modifier": 7}', "modifier: Input should be less than or equal to 1"),
        (b'{"modifier": "0.5"}', "modifier: Input should be a valid number"),
        (b'{"score": 0.5}', "modifier: Field required"),
        (b"not json", "body: Invalid JSON"),
        (b'{"modifier": NaN}', "modifier: Input should be a finite number"),
    ],
)
async def test_bad_data_is_a_response_error_that_does_not_trip(
    connect: Any, reputation: ReputationServer, body: bytes, problem: str
) -> None:
    """A 200 with a body that breaks the contract is permanent and leaves the breaker closed."""
    reputation.script(Reply(200, body))
    enricher = connect(fail_max=1)
    with pytest.raises(EnrichmentResponseError, match=problem):
        await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert len(reputation.requests) == 1
    assert enricher.breaker_state == "closed"


async def test_an_open_breaker_fails_fast_without_calling(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """After fail_max failed attempts calls raise DependencyUnavailable and send nothing."""
    reputation.script(Reply(503, b"down"))
    enricher = connect(max_attempts=1, fail_max=2, reset_timeout_seconds=60)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(EnrichmentTransientError):
            await enricher.enrich("acme", "acct-42", EVIDENCE)
        with pytest.raises(DependencyUnavailable):
            await enricher.enrich("acme", "acct-42", EVIDENCE)
        with pytest.raises(DependencyUnavailable) as caught:
            await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert len(reputation.requests) == 2
    assert enricher.breaker_state == "open"
    assert 0 < caught.value.retry_after <= 60
    assert sample(registry, "riskpipe_enrichment_breaker_state") == 2
    assert sample(registry, "riskpipe_enrichment_breaker_transitions_total", to="open") == 1
    assert sample(registry, "riskpipe_enrichment_calls_total", outcome="unavailable") == 2
    changes = [entry for entry in logs if entry["event"] == "enrichment_breaker_state_changed"]
    assert [(c["from_state"], c["to_state"], c["log_level"]) for c in changes] == [
        ("closed", "open", "warning")
    ]


async def test_an_open_breaker_stops_the_retries(
    connect: Any, reputation: ReputationServer
) -> None:
    """When a failing attempt opens the breaker, no further attempt is made."""
    reputation.script(Reply(503, b"down"))
    enricher = connect(max_attempts=5, fail_max=2, reset_timeout_seconds=60)
    with pytest.raises(DependencyUnavailable):
        await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert len(reputation.requests) == 2


async def test_the_breaker_recovers_through_a_half_open_trial(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """Once the reset timeout passes a trial call goes through, and success closes the breaker."""
    reputation.script(Reply(503, b"down"), Reply())
    enricher = connect(max_attempts=1, fail_max=1, reset_timeout_seconds=0)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(DependencyUnavailable):
            await enricher.enrich("acme", "acct-42", EVIDENCE)
        assert enricher.breaker_state == "half_open"
        signal = await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert signal.modifier == 0.25
    assert enricher.breaker_state == "closed"
    assert sample(registry, "riskpipe_enrichment_breaker_state") == 0
    for state in ("open", "half_open", "closed"):
        assert sample(registry, "riskpipe_enrichment_breaker_transitions_total", to=state) == 1
    changes = [entry for entry in logs if entry["event"] == "enrichment_breaker_state_changed"]
    assert [(c["from_state"], c["to_state"]) for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_a_failed_trial_opens_the_breaker_again(
    connect: Any, reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """A trial call that fails re-opens the breaker at once."""
    reputation.script(Reply(503, b"down"))
    enricher = connect(max_attempts=1, fail_max=1, reset_timeout_seconds=0)
    for _ in range(2):
        with pytest.raises(DependencyUnavailable):
            await enricher.enrich("acme", "acct-42", EVIDENCE)
    assert len(reputation.requests) == 2
    assert sample(registry, "riskpipe_enrichment_breaker_transitions_total", to="open") == 2
    assert sample(registry, "riskpipe_enrichment_breaker_transitions_total", to="half_open") == 1


async def test_cancelling_a_call_propagates_and_does_not_trip(
    connect: Any, reputation: ReputationServer
) -> None:
    """A caller's cancellation surfaces as CancelledError and is not counted as a failure."""
    reputation.script(HANG)
    enricher = connect(timeout_seconds=30, fail_max=1)
    call = asyncio.create_task(enricher.enrich("acme", "acct-42", EVIDENCE))
    async with asyncio.timeout(5):
        await reputation.wait_for_requests(1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert enricher.breaker_state == "closed"


async def test_metrics_are_named_and_documented(connect: Any, registry: CollectorRegistry) -> None:
    """Every metric exists on the given registry with help text and low-cardinality labels."""
    connect()
    text = generate_latest(registry).decode()
    for name, kind in [
        ("riskpipe_enrichment_calls_total", "counter"),
        ("riskpipe_enrichment_retries_total", "counter"),
        ("riskpipe_enrichment_latency_seconds", "histogram"),
        ("riskpipe_enrichment_breaker_state", "gauge"),
        ("riskpipe_enrichment_breaker_transitions_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}" in text
        assert f"# HELP {name} " in text
    assert 'riskpipe_enrichment_calls_total{outcome="unavailable"} 0.0' in text
    assert 'riskpipe_enrichment_breaker_transitions_total{to="half_open"} 0.0' in text


def test_settings_are_validated() -> None:
    """A non-HTTP URL or a zero attempt budget is rejected."""
    with pytest.raises(ValidationError, match="url"):
        EnricherSettings(url="ftp://example.invalid/")
    with pytest.raises(ValidationError, match="max_attempts"):
        EnricherSettings(url="http://127.0.0.1:1/", max_attempts=0)


async def test_a_caller_owned_client_is_left_open(
    reputation: ReputationServer, registry: CollectorRegistry
) -> None:
    """Closing the enricher leaves a client it was given to its owner."""
    async with httpx.AsyncClient() as client:
        async with HttpEnricher(
            EnricherSettings(url=reputation.url), registry=registry, client=client
        ) as enricher:
            await enricher.enrich("acme", "acct-42", EVIDENCE)
        assert not client.is_closed
