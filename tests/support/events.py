"""Builders for test events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventstore import CloudEvent

__all__ = ["BASE_TIME", "SAMPLE_LOG", "evidence", "evidence_line"]

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

SAMPLE_LOG: list[dict[str, Any]] = [
    {"pattern": "failed_login_burst", "severity": "high", "confidence": 1.0,
     "observed_at": "2024-05-01T00:00:00Z", "source": "idp"},
    {"pattern": "impossible_travel", "severity": "medium", "confidence": 1.0,
     "observed_at": "2024-05-02T00:00:00Z", "recorded_at": "2024-05-02T12:00:00Z",
     "source": "geo"},
    {"pattern": "malware_detected", "severity": "critical", "confidence": 0.95,
     "observed_at": "2024-05-02T00:00:00Z", "source": "edr"},
]  # fmt: skip
"""An evidence log for one entity, as `riskpipe analyze` and the facade read it."""


def evidence(  # noqa: PLR0913 - a test builder with a default for everything
    event_id: str,
    *,
    entity: str = "e1",
    tenant: str = "t1",
    source: str = "test-src",
    pattern: str = "failed_login_burst",
    severity: str = "high",
    minute: int = 0,
    version: int = 1,
    **data: Any,
) -> CloudEvent:
    """An evidence event with sensible defaults (``version`` 2 for v2 evidence)."""
    return CloudEvent(
        id=event_id,
        source=source,
        type=f"riskpipe.evidence.recorded.v{version}",
        subject=entity,
        tenant=tenant,
        time=BASE_TIME + timedelta(minutes=minute),
        data={"pattern": pattern, "severity": severity, **data},
    )


def evidence_line(event_id: str, **kwargs: Any) -> str:
    """One JSONL line holding an evidence event."""
    return evidence(event_id, **kwargs).model_dump_json(exclude_none=True)
