"""The enrichment edge: the only I/O the analyzer owns.

:class:`HttpEnricher` implements :class:`analyzers.Enricher` over HTTP with
per-attempt timeouts, bounded retries with exponential backoff and jitter, and
a circuit breaker. Fetch a signal with it, then pass the signal to
:func:`analyzers.assess`, which stays pure.
"""

from analyzers.enrichment._breaker import BreakerState
from analyzers.enrichment._http import DELIVERY_HEADER, HttpEnricher, delivery
from analyzers.enrichment._metrics import EnrichmentMetrics
from analyzers.enrichment._settings import EnricherSettings

__all__ = [
    "DELIVERY_HEADER",
    "BreakerState",
    "EnricherSettings",
    "EnrichmentMetrics",
    "HttpEnricher",
    "delivery",
]
