"""The evidence a producer records about an entity (``riskpipe.evidence.recorded.v1``)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "EVIDENCE_RECORDED",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_STRING",
    "EvidenceData",
    "Severity",
]

EVIDENCE_RECORDED = "riskpipe.evidence.recorded.v1"
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_STRING = 512
_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ATTRIBUTE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


class Severity(StrEnum):
    """How bad the observed thing is, as the producer judged it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def _pattern(value: str) -> str:
    if not _PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid pattern {value!r}: use 1 to 64 lowercase letters, digits or"
            " underscores, starting with a letter (e.g. failed_login_burst)"
        )
    return value


AttributeValue = Annotated[str, Field(max_length=MAX_ATTRIBUTE_STRING)] | int | float | bool | None


def _attributes(value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes, got {len(value)}")
    bad = [key for key in value if not _ATTRIBUTE_KEY.fullmatch(key)]
    if bad:
        raise ValueError(f"invalid attribute key {bad[0]!r}: use up to 64 letters, digits, _ or -")
    return value


class EvidenceData(BaseModel):
    """The ``data`` of an evidence event: one observation about one entity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)

    pattern: Annotated[str, AfterValidator(_pattern)]
    severity: Severity
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    observed_at: AwareDatetime | None = None
    attributes: Annotated[dict[str, AttributeValue], AfterValidator(_attributes)] = Field(
        default_factory=dict
    )
    description: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _observed_defaults_to_event_time(cls, data: Any, info: ValidationInfo) -> Any:  # noqa: ANN401 - pydantic hook
        """Fill ``observed_at`` from the envelope's ``time`` when the producer left it out."""
        event_time = info.context.get("event_time") if info.context else None
        if isinstance(data, dict) and data.get("observed_at") is None and event_time is not None:
            return {**data, "observed_at": event_time}
        return data

    def observed(self, default: datetime) -> datetime:
        """When the thing was observed: ``observed_at``, else ``default``."""
        return self.observed_at if self.observed_at is not None else default
