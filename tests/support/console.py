"""The console's test set-up: evidence that carries markup, for the escaping checks."""

from __future__ import annotations

from datetime import UTC, datetime

from eventstore import CloudEvent

__all__ = ["XSS", "XSS_ENTITY", "markup_evidence", "plain_evidence"]

XSS = "<script>alert(1)</script>"
"""What a hostile producer writes into evidence: it must show as text."""
XSS_ENTITY = "user-xss"


def markup_evidence(n: int, *, tenant: str = "acme", entity: str = XSS_ENTITY) -> CloudEvent:
    """Critical evidence whose description and attributes hold markup (a case opens on it)."""
    return CloudEvent(
        id=f"xss-{n}",
        source="edr",
        subject=entity,
        tenant=tenant,
        type="riskpipe.evidence.recorded.v1",
        time=datetime.now(UTC),
        data={
            "pattern": "malware_alert",
            "severity": "critical",
            "confidence": 0.95,
            "description": XSS,
            "attributes": {"host": XSS, "note": "\"'><img src=x onerror=alert(2)>"},
        },
    )


def plain_evidence(n: int, *, tenant: str, entity: str, severity: str = "high") -> CloudEvent:
    """Ordinary evidence about ``entity``."""
    return CloudEvent(
        id=f"console-{entity}-{n}",
        source="edr",
        subject=entity,
        tenant=tenant,
        type="riskpipe.evidence.recorded.v1",
        time=datetime.now(UTC),
        data={"pattern": "malware_alert", "severity": severity, "confidence": 0.9},
    )
