"""Synthetic, realistic evidence for the demo and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventstore import CloudEvent

if TYPE_CHECKING:
    import random

__all__ = ["POISON", "Profile", "demo_evidence", "synthetic_evidence"]

_SEVERITIES = ("low", "medium", "high", "critical")
_PATTERNS = ("failed_login_burst", "impossible_travel", "malware_alert", "sanctions_hit")
DEMO_START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Profile:
    """An entity and the kind of evidence its story produces."""

    entity: str
    tenant: str
    story: tuple[tuple[str, str, str, float], ...]
    """(source, pattern, severity, confidence) steps, repeated with noise."""


A = "auth-service"
FRAUD = "fraud-engine"
PROFILES = (
    Profile("user-alice", "acme", ((A, "failed_login", "low", 0.6),)),
    Profile(
        "user-bob", "acme", ((A, "failed_login", "low", 0.7), ("vpn", "new_device", "low", 0.8))
    ),
    Profile(
        "user-carol",
        "acme",
        (
            (A, "failed_login_burst", "medium", 0.8),
            ("geo-ip", "impossible_travel", "high", 0.9),
            (A, "mfa_fatigue", "high", 0.85),
            ("iam", "privilege_escalation", "critical", 0.95),
        ),
    ),
    Profile("svc-payments", "acme", (("api-gateway", "rate_limit_abuse", "medium", 0.7),)),
    Profile(
        "host-db-01",
        "acme",
        (
            ("edr", "malware_alert", "high", 0.9),
            ("netflow", "c2_beacon", "critical", 0.8),
            ("edr", "lateral_movement", "high", 0.75),
        ),
    ),
    Profile("host-web-07", "acme", (("waf", "sql_injection_attempt", "medium", 0.6),)),
    Profile(
        "vendor-oceanic", "globex", (("sanctions-screening", "sanctions_hit", "critical", 0.97),)
    ),
    Profile("vendor-initech", "globex", (("kyc", "document_mismatch", "medium", 0.7),)),
    Profile(
        "user-dave",
        "globex",
        ((A, "failed_login_burst", "medium", 0.8), ("dlp", "data_exfiltration", "high", 0.7)),
    ),
    Profile("user-erin", "globex", ((A, "failed_login", "low", 0.5),)),
    Profile(
        "card-4411",
        "globex",
        ((FRAUD, "card_testing", "high", 0.85), (FRAUD, "velocity_spike", "medium", 0.8)),
    ),
    Profile("merchant-77", "globex", ((FRAUD, "chargeback_spike", "medium", 0.75),)),
)

_T = '"time":"2026-11-02T08:00:00Z"'
POISON: tuple[tuple[str, str, bytes], ...] = (
    ("acme", "user-mallory", b'{"id": "p1", "source": "legacy-feed", "subject": "user-mallory"'),
    (
        "acme",
        "user-mallory",
        f'{{"id":"p2","source":"legacy-feed","subject":"user-mallory","tenant":"acme",{_T},'
        '"data":{"pattern":"failed_login","severity":"extreme"}}'.encode(),
    ),
    (
        "globex",
        "vendor-shady",
        f'{{"id":"p3","source":"legacy-feed","type":"riskpipe.unknown.v1",{_T},'
        '"subject":"vendor-shady","tenant":"globex","data":{}}'.encode(),
    ),
    (
        "globex",
        "vendor-shady",
        f'{{"id":"p4","source":"legacy-feed","subject":"vendor-shady","tenant":"globex",{_T},'
        '"data":{"pattern":"x","severity":"low","confidence":NaN}}'.encode(),
    ),
)
"""Messages a misbehaving producer might write around the store: each must end as a dead letter."""


def demo_evidence(rng: random.Random, *, events: int = 300) -> list[CloudEvent]:
    """About ``events`` evidence events over the demo's dozen entities, in time order."""
    out: list[CloudEvent] = []
    when = DEMO_START
    for i in range(events):
        profile = PROFILES[rng.randrange(len(PROFILES))]
        source, pattern, severity, confidence = profile.story[rng.randrange(len(profile.story))]
        when += timedelta(seconds=rng.randint(600, 14_400))
        out.append(
            CloudEvent(
                id=f"ev-{i:05d}",
                source=source,
                subject=profile.entity,
                tenant=profile.tenant,
                type="riskpipe.evidence.recorded.v1",
                time=when,
                data=_data(rng, pattern, severity, confidence),
            )
        )
    return out


def _data(rng: random.Random, pattern: str, severity: str, confidence: float) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "severity": severity,
        "confidence": round(min(1.0, max(0.05, confidence + rng.uniform(-0.1, 0.1))), 2),
        "attributes": {"ip": f"203.0.113.{rng.randrange(1, 255)}", "count": rng.randint(1, 40)},
    }


def synthetic_evidence(count: int, *, source: str, entities: int) -> list[CloudEvent]:
    """``count`` evidence events (~300 bytes each) spread over ``entities`` entities."""
    return [
        CloudEvent(
            id=f"ev-{i:08d}",
            source=source,
            type="riskpipe.evidence.recorded.v1",
            subject=f"entity-{i % entities:05d}",
            tenant="bench",
            time=DEMO_START + timedelta(seconds=i),
            data={
                "pattern": _PATTERNS[i % len(_PATTERNS)],
                "severity": _SEVERITIES[i % len(_SEVERITIES)],
                "confidence": 0.9,
                "attributes": {"ip": f"10.0.{i % 250}.{i % 199}", "count": i % 50},
            },
        )
        for i in range(count)
    ]
