"""The two shapes an entry of an offline evidence log may take."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - pydantic needs it at runtime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from analyzers._evidence import EVIDENCE_RECORDED_V2, Evidence, EvidenceData, EvidenceDataV2

__all__ = ["EvidenceEvent", "EvidenceEventV2", "LogEntry", "evidence_of"]


class LogEntry(EvidenceData):
    """An evidence object: the evidence data plus who reported it.

    ``observed_at`` is required: there is no envelope time to fall back on.
    """

    observed_at: AwareDatetime
    id: str | None = Field(default=None, min_length=1, max_length=256)
    source: str = Field(default="log", min_length=1, max_length=256)
    recorded_at: datetime | None = None

    def to_evidence(self, index: int) -> Evidence:
        """The entry as :class:`Evidence` (offline: sequence 0, id ``log-<n>`` if absent)."""
        return Evidence(
            event_id=self.id if self.id is not None else f"log-{index + 1}",
            source=self.source,
            sequence=0,
            pattern=self.pattern,
            severity=self.severity,
            confidence=self.confidence,
            observed_at=self.observed_at,
            attributes=dict(self.attributes),
            recorded_at=self.recorded_at,
            confidence_reported="confidence" in self.model_fields_set,
        )


class EvidenceEvent(BaseModel):
    """An evidence event as ``riskpipe publish`` reads it: a CloudEvents envelope."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=256)
    type: Literal["riskpipe.evidence.recorded.v1"] = "riskpipe.evidence.recorded.v1"
    subject: str | None = Field(default=None, max_length=256)
    tenant: str = Field(default="default", max_length=256)
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str | None = None
    causationid: str | None = None
    data: EvidenceData

    def to_evidence(self) -> Evidence:
        """The event as :class:`Evidence` (offline: sequence 0)."""
        return Evidence.from_data(
            self.data, event_id=self.id, source=self.source, sequence=0, event_time=self.time
        )


class EvidenceEventV2(EvidenceEvent):
    """A v2 evidence event (``impact``, nested attributes), as ``riskpipe publish`` reads it."""

    type: Literal["riskpipe.evidence.recorded.v2"]  # type: ignore[assignment] # the version
    data: EvidenceDataV2  # type: ignore[assignment] # v2's data


def evidence_of(item: dict[str, Any], index: int) -> tuple[Evidence, str | None]:
    """The evidence in one log entry, and the entity it is about when it says so.

    An entry with a ``data`` member is an evidence event (v1, or v2 when its
    ``type`` says so), anything else an evidence object.

    Raises:
        pydantic.ValidationError: the entry does not match its shape.
        InvalidEvidenceError: a value is out of range.
    """
    if "data" not in item:
        return LogEntry.model_validate(item).to_evidence(index), None
    shape = EvidenceEventV2 if item.get("type") == EVIDENCE_RECORDED_V2 else EvidenceEvent
    event = shape.model_validate(item, context={"event_time": item.get("time")})
    entity = None if event.subject is None else f"{event.tenant}/{event.subject}"
    return event.to_evidence(), entity
