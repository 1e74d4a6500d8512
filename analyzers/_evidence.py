"""The evidence a producer records about an entity (``riskpipe.evidence.recorded.v1``, ``.v2``).

:class:`EvidenceData` is the schema of a v1 event's ``data``,
:class:`EvidenceDataV2` of a v2 event's: v2 adds ``impact`` and lets an
attribute be an object of scalars. :func:`upcast_evidence` reads v1 data as
v2, which is all the analyzer ever sees. :class:`Evidence` is the analyzer's
view of one recorded event: the data plus the identity, stream position and
recording time the envelope adds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from analyzers.errors import InvalidEvidenceError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue

__all__ = [
    "EVIDENCE_RECORDED",
    "EVIDENCE_RECORDED_V2",
    "EVIDENCE_TYPES",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_STRING",
    "MAX_NESTED_ATTRIBUTES",
    "Evidence",
    "EvidenceData",
    "EvidenceDataV2",
    "ObservedTime",
    "PatternName",
    "Severity",
    "observed_or_event_time",
    "upcast_evidence",
]

EVIDENCE_RECORDED = "riskpipe.evidence.recorded.v1"
"""The first version of evidence, and the type of an event that names none."""
EVIDENCE_RECORDED_V2 = "riskpipe.evidence.recorded.v2"
"""The latest version of evidence: what the analyzer reads every evidence event as."""
EVIDENCE_TYPES = (EVIDENCE_RECORDED, EVIDENCE_RECORDED_V2)
"""Every version of evidence a producer may record, oldest first."""
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_STRING = 512
MAX_NESTED_ATTRIBUTES = 16
"""Keys of an object an attribute holds (v2): one level of nesting, of scalars only."""
# Far from datetime.min, so subtracting a decay window can never overflow.
_FIRST_YEAR = 1970
_EDGE_DAYS = (date(_FIRST_YEAR, 1, 1), date(9999, 12, 31))
# Checked by pydantic's own (Rust) regex engine: these run for every event.
_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ATTRIBUTE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")


class Severity(StrEnum):
    """How bad the observed thing is, as the producer judged it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


AttributeValue = Annotated[str, Field(max_length=MAX_ATTRIBUTE_STRING)] | int | float | bool | None


AttributeKey = Annotated[str, StringConstraints(pattern=_ATTRIBUTE_KEY.pattern)]
NestedAttributes = Annotated[
    dict[AttributeKey, AttributeValue],
    Field(max_length=MAX_NESTED_ATTRIBUTES, json_schema_extra={"additionalProperties": False}),
]
"""A v2 attribute's object: up to 16 keys, each holding a scalar (never another object)."""
AttributeValueV2 = AttributeValue | NestedAttributes
PatternName = Annotated[str, StringConstraints(pattern=_PATTERN.pattern)]
"""An evidence pattern's name: a lowercase token such as ``failed_login_burst``."""

# The same RFC 3339 form as the envelope's `time` (eventstore's `RFC3339`; this package
# may not import eventstore): upper-case `T` and `Z`, seconds, at most microseconds, a
# timezone; and a year from 1970 on, as `_in_era` asks.
_RFC3339 = (
    r"^(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])"
    r"-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
# The first and last day of the era with an offset other than zero: see `_in_era`.
_EDGE_OFFSET = (
    r"^(?:1970-01-01|9999-12-31)T[0-9:.]+[+-]"
    r"(?:(?:0[1-9]|1[0-9]|2[0-3]):[0-5][0-9]|00:(?:0[1-9]|[1-5][0-9]))$"
)
_FRACTION = re.compile(r"T[^.]*\.([0-9]*)")
_MAX_FRACTION_DIGITS = 6


def _precise_enough(value: Any) -> Any:  # noqa: ANN401 - pydantic hook: any input
    """Refuse a time string with more fractional digits than a microsecond (silently lost).

    The envelope's rule (eventstore's ``check_precision``), kept here as well
    because this package may not import eventstore.
    """
    if isinstance(value, str) and (found := _FRACTION.search(value)) is not None:
        digits = len(found.group(1))
        if digits > _MAX_FRACTION_DIGITS:
            raise PydanticCustomError(
                "datetime_precision",
                "{value} has {digits} fractional digits: times are kept to the microsecond"
                " (at most 6 digits), so round or cut it",
                {"value": value, "digits": digits},
            )
    return value


def _utc_in_era(value: datetime) -> datetime:
    """``value`` in UTC, once :func:`_in_era` holds for it (as given, offset and all)."""
    if not _in_era(value):
        raise PydanticCustomError(
            "datetime_era",
            f"must be in the years {_FIRST_YEAR} to 9999, given in UTC on {_FIRST_YEAR}-01-01"
            " and 9999-12-31 (left out, observed_at is the event's time)",
        )
    return value.astimezone(UTC)


class _Rfc3339:
    """A ``datetime``, or a string in RFC 3339 form (no number, no lax format), in the era.

    Checked inside pydantic-core, so that JSON input is held to exactly what the
    published JSON Schema says; the time is kept in UTC.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls,
        source: Any,  # noqa: ANN401 - pydantic hook
        handler: GetCoreSchemaHandler,
    ) -> core_schema.CoreSchema:
        aware = handler(source)
        parsed = core_schema.union_schema(
            [
                core_schema.chain_schema([core_schema.is_instance_schema(datetime), aware]),
                core_schema.chain_schema([core_schema.str_schema(pattern=_RFC3339), aware]),
            ],
            custom_error_type="datetime_rfc3339",
            custom_error_message="must be a valid RFC 3339 date-time with a timezone,"
            f" from {_FIRST_YEAR} on, e.g. 2026-11-29T08:00:00Z",
        )
        return core_schema.no_info_before_validator_function(
            _precise_enough,
            core_schema.no_info_after_validator_function(_utc_in_era, parsed),
            serialization=aware.get("serialization"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "date-time",
            "pattern": _RFC3339,
            "not": {"pattern": _EDGE_OFFSET},
        }


ObservedTime = Annotated[AwareDatetime, _Rfc3339()]
"""A time something was observed: RFC 3339 with an offset, kept in UTC, in the era."""


def observed_or_event_time(data: Any, info: ValidationInfo) -> Any:  # noqa: ANN401 - pydantic hook
    """``data`` with ``observed_at`` from the envelope's ``time`` (the context's) when left out."""
    event_time = info.context.get("event_time") if info.context else None
    if isinstance(data, dict) and data.get("observed_at") is None and event_time is not None:
        return {**data, "observed_at": event_time}
    return data


class EvidenceData(BaseModel):
    """The ``data`` of an evidence event: one observation about one entity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)

    pattern: PatternName
    """A lowercase token naming what was observed, e.g. ``failed_login_burst``."""
    severity: Severity
    # strict: a number, as the JSON Schema says, never a numeric string or a boolean
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, strict=True)
    observed_at: ObservedTime | None = None
    attributes: dict[AttributeKey, AttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        # the keys' pattern is the only way in: no other key is allowed
        json_schema_extra={"additionalProperties": False},
    )
    description: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _observed_defaults_to_event_time(cls, data: Any, info: ValidationInfo) -> Any:  # noqa: ANN401 - pydantic hook
        """Fill ``observed_at`` from the envelope's ``time`` when the producer left it out."""
        return observed_or_event_time(data, info)

    def observed(self, default: datetime) -> datetime:
        """When the thing was observed: ``observed_at``, else ``default``."""
        return self.observed_at if self.observed_at is not None else default


class EvidenceDataV2(BaseModel):
    """The ``data`` of a v2 evidence event: v1's fields, ``impact``, and nestable attributes.

    ``impact`` (0 to 1, optional) is how far the observed thing reaches
    beyond its severity: the analyzer adds ``impact`` times the evidence's
    mass as ``impact_amplification`` (docs/analyzer.md). Left out, the
    evidence scores exactly as v1 evidence does. An attribute may be an
    object of up to 16 scalars: one level, never deeper.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)

    pattern: PatternName
    """A lowercase token naming what was observed, e.g. ``failed_login_burst``."""
    severity: Severity
    confidence: float = Field(default=1.0, ge=0.0, le=1.0, strict=True)
    impact: float | None = Field(default=None, ge=0.0, le=1.0, strict=True)
    """How far the observed thing reaches beyond its severity, from 0 to 1 (optional)."""
    observed_at: ObservedTime | None = None
    attributes: dict[AttributeKey, AttributeValueV2] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        json_schema_extra={"additionalProperties": False},
    )
    description: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _observed_defaults_to_event_time(cls, data: Any, info: ValidationInfo) -> Any:  # noqa: ANN401 - pydantic hook
        """Fill ``observed_at`` from the envelope's ``time`` when the producer left it out."""
        return observed_or_event_time(data, info)

    @field_validator("attributes", mode="before")
    @classmethod
    def _one_level(cls, value: Any) -> Any:  # noqa: ANN401 - pydantic hook: any input
        """Refuse too big an object, or one inside an attribute's object, saying so in one line."""
        if not isinstance(value, dict):
            return value
        for key, inner in value.items():
            if not isinstance(inner, dict):
                continue
            if len(inner) > MAX_NESTED_ATTRIBUTES:
                raise PydanticCustomError(
                    "attribute_keys",
                    "{key}: an attribute's object has at most {limit} keys, not {count}",
                    {"key": key, "limit": MAX_NESTED_ATTRIBUTES, "count": len(inner)},
                )
            for name, item in inner.items():
                if isinstance(item, dict | list):
                    raise PydanticCustomError(
                        "attribute_nesting",
                        "{key}.{name}: an attribute's object holds scalars only (strings,"
                        " numbers, booleans, null): attributes nest one level at most",
                        {"key": key, "name": name},
                    )
        return value

    def observed(self, default: datetime) -> datetime:
        """When the thing was observed: ``observed_at``, else ``default``."""
        return self.observed_at if self.observed_at is not None else default


def upcast_evidence(data: BaseModel) -> EvidenceDataV2:
    """v1 evidence data read as v2: the same fields, no ``impact``, the same attributes.

    Deterministic and lossless: which fields the producer set is kept (a
    reported ``confidence`` stays told apart from the default), so the
    analyzer scores the result exactly as it scored the v1 data.

    Raises:
        TypeError: ``data`` is not v1 evidence data.
    """
    if not isinstance(data, EvidenceData):
        raise TypeError(f"not v1 evidence data: {type(data).__name__}")
    # Built as model_construct would, without its per-field work: this runs for every
    # v1 event the worker reads, and every value is one v1 validated (v2 allows more).
    v1 = data.__dict__
    upcast = object.__new__(EvidenceDataV2)
    _set(
        upcast,
        "__dict__",
        {
            "pattern": v1["pattern"],
            "severity": v1["severity"],
            "confidence": v1["confidence"],
            "impact": None,
            "observed_at": v1["observed_at"],
            "attributes": dict(v1["attributes"]),
            "description": v1["description"],
        },
    )
    _set(upcast, "__pydantic_fields_set__", set(data.model_fields_set))
    _set(upcast, "__pydantic_extra__", None)
    _set(upcast, "__pydantic_private__", None)
    return upcast


@dataclass(frozen=True, slots=True)
class Evidence:
    """One recorded piece of evidence, as the analyzer scores it.

    Times are normalised to UTC. ``recorded_at`` is when the event was recorded
    (the envelope's ``time``); evidence recorded long after it was observed
    counts as less fresh. ``confidence_reported`` says whether the producer
    gave its own confidence rather than relying on the default. ``impact`` is
    v2's (``None``: not reported, as in every v1 event).

    Raises:
        InvalidEvidenceError: a field is out of range or a time is naive.
    """

    event_id: str
    source: str
    sequence: int
    pattern: str
    severity: Severity
    confidence: float
    observed_at: datetime
    attributes: Mapping[str, AttributeValueV2] = field(default_factory=dict, hash=False)
    recorded_at: datetime | None = None
    confidence_reported: bool = True
    impact: float | None = None
    lag_seconds: float = field(init=False, repr=False, compare=False)
    """How long after its observation the evidence was recorded (never negative)."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InvalidEvidenceError(problems)
        observed = self.observed_at.astimezone(UTC)
        recorded = observed if self.recorded_at is None else self.recorded_at.astimezone(UTC)
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "observed_at", observed)
        object.__setattr__(self, "recorded_at", recorded)
        object.__setattr__(self, "lag_seconds", max(0.0, (recorded - observed).total_seconds()))

    @classmethod
    def from_data(
        cls,
        data: EvidenceDataV2 | EvidenceData,
        *,
        event_id: str,
        source: str,
        sequence: int,
        event_time: datetime,
    ) -> Evidence:
        """The evidence of a recorded event: its validated data plus envelope facts.

        ``observed_at`` falls back to ``event_time`` when the producer left it out.
        v1 data is read as v2 first (:func:`upcast_evidence`).

        Raises:
            InvalidEvidenceError: the envelope facts are out of range.
        """
        if isinstance(data, EvidenceData):
            data = upcast_evidence(data)
        observed = data.observed(event_time)
        fields: dict[str, object] = {
            "event_id": event_id,
            "source": source,
            "sequence": sequence,
            "pattern": data.pattern,
            "severity": data.severity,
            "confidence": data.confidence,
            "observed_at": observed,
            "attributes": dict(data.attributes),
            "recorded_at": event_time,
            "confidence_reported": "confidence" in data.model_fields_set,
            "impact": data.impact,
        }
        if not (event_id and source and _is_sequence(sequence) and _in_era(observed)):
            return cls(**fields)  # type: ignore[arg-type] # raises, naming the problem
        # The data model validated the rest (pattern, severity, confidence, aware
        # times): set the fields as __post_init__ would, without checking again.
        observed = observed.astimezone(UTC)
        recorded = event_time.astimezone(UTC)
        evidence = object.__new__(cls)
        fields["observed_at"] = observed
        fields["recorded_at"] = recorded
        fields["lag_seconds"] = max(0.0, (recorded - observed).total_seconds())
        for name, value in fields.items():
            _set(evidence, name, value)
        return evidence


def _problems(evidence: Evidence) -> list[str]:
    passed = (
        bool(evidence.event_id),
        bool(evidence.source),
        _is_sequence(evidence.sequence),
        _is_pattern(evidence.pattern),
        evidence.severity in _SEVERITIES,
        _is_unit(evidence.confidence),
        evidence.impact is None or _is_unit(evidence.impact),
        _is_aware(evidence.observed_at),
        _in_era(evidence.observed_at),
        evidence.recorded_at is None or _is_aware(evidence.recorded_at),
    )
    if all(passed):
        return []  # the usual case: no message is formatted
    messages = (
        "event_id must not be empty",
        "source must not be empty",
        "sequence must be an integer >= 0",
        f"invalid pattern {evidence.pattern!r}",
        f"invalid severity {evidence.severity!r}",
        "confidence must be a finite number in [0, 1]",
        "impact must be a finite number in [0, 1], or None",
        "observed_at must be a timezone-aware datetime",
        f"observed_at must be in the years {_FIRST_YEAR} to 9999",
        "recorded_at must be a timezone-aware datetime",
    )
    return [message for ok, message in zip(passed, messages, strict=True) if not ok]


_SEVERITIES = frozenset(Severity)
_set = object.__setattr__


def _is_sequence(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_unit(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0


def _in_era(value: object) -> bool:
    """Whether a time (any other value passes) lies in the years evidence may carry.

    From 1970 (far from ``datetime.min``, so subtracting a decay window never
    overflows) to 9999, as given, and on the first and last day in UTC only:
    with an offset there it may lie outside the era, or outside what a
    ``datetime`` holds, once in UTC. One rule for ``riskpipe publish`` (the
    data model) and the worker (the data model again, then :class:`Evidence`).
    """
    if not isinstance(value, datetime):
        return True
    if value.utcoffset() and value.date() in _EDGE_DAYS:
        return False
    return value.year >= _FIRST_YEAR


def _is_aware(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _is_pattern(value: object) -> bool:
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None
