"""Helpers for review projection tests: risky evidence in, the cases it opened out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.review import OPENED
from support.events import evidence

if TYPE_CHECKING:
    from eventstore import EventStore

__all__ = ["append_severities", "opened_cases"]


async def append_severities(
    store: EventStore, entity: str, severities: list[str], start: int = 0
) -> None:
    """One evidence event of ``entity`` per severity, a minute apart (critical: malware)."""
    for n, severity in enumerate(severities, start):
        pattern = "malware_detected" if severity == "critical" else "failed_login_burst"
        await store.append(
            evidence(f"{entity}-{n}", entity=entity, severity=severity, pattern=pattern, minute=n)
        )


async def opened_cases(store: EventStore) -> list[tuple[str, int]]:
    """``(entity, case number)`` of every ``opened`` event in REVIEW, in order."""
    return [
        (rec.event.subject, int(rec.event.data["case"]))  # type: ignore[arg-type, index]
        async for rec in store.read_all(stream="REVIEW")
        if rec.event is not None and rec.event.type == OPENED
    ]
