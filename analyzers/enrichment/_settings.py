"""How an :class:`~analyzers.enrichment.HttpEnricher` talks to its service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EnricherSettings"]


class EnricherSettings(BaseModel):
    """Endpoint, timeout, retry and circuit-breaker settings of an HTTP enricher.

    Retries wait ``backoff_seconds * 2 ** (n - 1)`` plus up to ``jitter_seconds``
    of random jitter before retry ``n``, never more than ``backoff_max_seconds``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    provider: str = Field(default="reputation", min_length=1, max_length=64)
    timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_seconds: float = Field(default=0.1, ge=0.0, le=60.0)
    backoff_max_seconds: float = Field(default=2.0, ge=0.0, le=300.0)
    jitter_seconds: float = Field(default=0.1, ge=0.0, le=60.0)
    fail_max: int = Field(default=5, ge=1, le=1000)
    reset_timeout_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
