"""One observation as a producer states it, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Observation", "Recorded", "Rejected"]

_EVIDENCE_TYPE = "riskpipe.evidence.recorded.v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """Something a producer observed about one entity: one evidence event.

    ``source`` and ``id`` are the event's identity: recording the same pair
    twice stores it once (the second answer is a duplicate). ``time`` is when
    the producer recorded it, ``observed_at`` when the thing happened (default:
    ``time``). Both need a timezone.
    """

    tenant: str
    entity: str
    pattern: str
    severity: str
    id: str
    source: str
    time: datetime
    confidence: float | None = None
    attributes: dict[str, str | int | float | bool | None] | None = None
    description: str | None = None
    observed_at: datetime | None = None
    correlationid: str | None = None
    causationid: str | None = None

    def fields(self) -> dict[str, Any]:
        """The event's attributes and data, as ``riskpipe publish`` reads them from a line."""
        data: dict[str, Any] = {"pattern": self.pattern, "severity": self.severity}
        for name in ("confidence", "attributes", "description"):
            if (value := getattr(self, name)) is not None:
                data[name] = value
        if self.observed_at is not None:  # data is JSON: a time is its RFC 3339 text
            data["observed_at"] = self.observed_at.isoformat()
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": _EVIDENCE_TYPE,
            "subject": self.entity,
            "tenant": self.tenant,
            "time": self.time,
            "data": data,
        }
        for name in ("correlationid", "causationid"):
            if (value := getattr(self, name)) is not None:
                event[name] = value
        return event

    def payload(self) -> bytes:
        """The event as a line of a ``riskpipe publish`` file (times in RFC 3339 form)."""
        return orjson.dumps(self.fields())


@dataclass(frozen=True, slots=True)
class Recorded:
    """An observation the store holds: its stream sequence, and whether it was there already."""

    sequence: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    """An observation that was not stored, and why (the reason ``riskpipe publish`` prints)."""

    reason: str
    error: str
    """The error's class name, e.g. ``SchemaViolationError``."""

    @classmethod
    def of(cls, exc: Exception) -> Rejected:
        """The rejection ``exc`` stands for."""
        return cls(str(exc), type(exc).__name__)
