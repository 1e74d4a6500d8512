"""One observation as a producer states it, and what became of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import orjson
from pydantic import BaseModel

from analyzers import EVIDENCE_RECORDED, EVIDENCE_RECORDED_V2
from eventstore import CloudEvent
from projections.learning import OUTCOME_RECORDED

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AttributeValue", "Observation", "Outcome", "Recorded", "Rejected"]

Scalar: TypeAlias = str | int | float | bool | None
AttributeValue: TypeAlias = Scalar | dict[str, Scalar]
"""An attribute: a scalar, or (v2) an object of scalars, one level deep."""
_ATTRIBUTES = CloudEvent.model_json_schema()["properties"]
_ID = re.compile(_ATTRIBUTES["id"]["pattern"])
_ID_MAX = 128
"""The id's pattern, ``^[\\x21-\\x7e]{1,128}$``, is checked by hand (a test pins the two agree)."""
_SOURCE = re.compile(_ATTRIBUTES["source"]["pattern"])
_SUBJECT = re.compile(_ATTRIBUTES["subject"]["pattern"])
_TENANT = re.compile(_ATTRIBUTES["tenant"]["pattern"])
_EDGE_DAYS = (date(1, 1, 1), date(9999, 12, 31))
"""Where a time with an offset may lie outside what UTC holds: the envelope refuses those."""
_SET = frozenset({"specversion", "id", "source", "type", "subject", "tenant", "time", "data"})
# A pydantic model's instance state, set through BaseModel's own slot descriptors:
# a third cheaper than object.__setattr__, which looks each name up on the class.
_new = object.__new__
_SLOTS = BaseModel.__dict__
_set_dict: Callable[[object, dict[str, Any]], None] = _SLOTS["__dict__"].__set__
_set_fields_set: Callable[[object, set[str]], None] = _SLOTS["__pydantic_fields_set__"].__set__
_set_extra: Callable[[object, dict[str, Any]], None] = _SLOTS["__pydantic_extra__"].__set__
_set_private: Callable[[object, None], None] = _SLOTS["__pydantic_private__"].__set__


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """Something a producer observed about one entity: one evidence event.

    ``source`` and ``id`` are the event's identity: recording the same pair
    twice stores it once (the second answer is a duplicate). ``time`` is when
    the producer recorded it, ``observed_at`` when the thing happened (default:
    ``time``). Both need a timezone.

    It is recorded as v1 evidence unless it uses what only v2 has (an
    ``impact``, or an attribute that is an object): a worker that does not
    know v2 yet still reads everything that did not need it.
    """

    tenant: str
    entity: str
    pattern: str
    severity: str
    id: str
    source: str
    time: datetime
    confidence: float | None = None
    impact: float | None = None
    """How far the observed thing reaches beyond its severity, 0 to 1 (v2)."""
    attributes: dict[str, AttributeValue] | None = None
    description: str | None = None
    observed_at: datetime | None = None
    correlationid: str | None = None
    causationid: str | None = None

    @property
    def event_type(self) -> str:
        """The evidence version it is recorded as: v2 only when it needs v2's fields."""
        if self.impact is not None:
            return EVIDENCE_RECORDED_V2
        if self.attributes:  # a loop, not any(): this runs for every observation
            for value in self.attributes.values():
                if isinstance(value, dict):
                    return EVIDENCE_RECORDED_V2
        return EVIDENCE_RECORDED

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pattern": self.pattern, "severity": self.severity}
        if self.confidence is not None:
            data["confidence"] = self.confidence
        if self.impact is not None:
            data["impact"] = self.impact
        if self.attributes is not None:
            data["attributes"] = self.attributes
        if self.description is not None:
            data["description"] = self.description
        if self.observed_at is not None:  # data is JSON: a time is its RFC 3339 text
            data["observed_at"] = self.observed_at.isoformat()
        return data

    def fields(self) -> dict[str, Any]:
        """The event's attributes and data, as ``riskpipe publish`` reads them from a line."""
        data = self._data()
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.event_type,
            "subject": self.entity,
            "tenant": self.tenant,
            "time": self.time,
            "data": data,
        }
        for name in ("correlationid", "causationid"):
            if (value := getattr(self, name)) is not None:
                event[name] = value
        return event

    def plain_event(self) -> CloudEvent | None:
        """The event, if every attribute is plainly valid; ``None``: validate :meth:`fields`.

        The envelope's checks of an observation's attributes, made with the
        envelope's own patterns (read from its JSON Schema) and the event made
        without pydantic's validation, which costs about three times as much:
        the same event :meth:`EventSchemas.envelope_then_data` makes of
        :meth:`fields`. Whatever is not plainly valid (a pattern not matched,
        a naive time or one on the edge days, a ``datetime`` subclass, a
        correlation id) is ``None``, and the validation says what is wrong,
        in its own words. ``data`` is checked by the store, as for any event.
        """
        time = self.time
        if (
            self.correlationid is not None
            or self.causationid is not None
            or type(time) is not datetime
            or (
                time.tzinfo is not UTC  # the usual case, and no offset to check
                and ((offset := time.utcoffset()) is None or (offset and time.date() in _EDGE_DAYS))
            )
        ):
            return None
        id_, entity, source, tenant = self.id, self.entity, self.source, self.tenant
        if (
            type(id_) is not str  # the id's pattern, printable ASCII without spaces, by hand:
            or not 0 < len(id_) <= _ID_MAX  # each is one C call, a match costs twice as much
            or not id_.isascii()
            or not id_.isprintable()
            or " " in id_
            or type(entity) is not str
            or type(source) is not str
            or type(tenant) is not str
            # the known ones first, without a call: most are
            or (
                entity not in _ENTITIES and not _known(_ENTITIES, _SUBJECT, entity, _ENTITIES_LIMIT)
            )
            or (source not in _SOURCES and not _known(_SOURCES, _SOURCE, source))
            or (tenant not in _TENANTS and not _known(_TENANTS, _TENANT, tenant))
        ):
            return None
        data: dict[str, Any] = {"pattern": self.pattern, "severity": self.severity}
        kind = EVIDENCE_RECORDED
        if self.confidence is not None:
            data["confidence"] = self.confidence
        if self.impact is not None:
            data["impact"] = self.impact
            kind = EVIDENCE_RECORDED_V2
        if (attributes := self.attributes) is not None:
            data["attributes"] = attributes
            for value in attributes.values():  # a loop, not any(): once per observation
                if isinstance(value, dict):
                    kind = EVIDENCE_RECORDED_V2
                    break
        if self.description is not None:
            data["description"] = self.description
        if self.observed_at is not None:  # data is JSON: a time is its RFC 3339 text
            data["observed_at"] = self.observed_at.isoformat()
        event = _new(CloudEvent)
        # what pydantic's model_construct sets, without its per-field bookkeeping
        _set_dict(
            event,
            {
                "specversion": "1.0",
                "id": id_,
                "source": source,
                "type": kind,
                "subject": entity,
                "tenant": tenant,
                "time": time,
                "datacontenttype": "application/json",
                "dataschema": None,
                "correlationid": None,
                "causationid": None,
                "data": data,
            },
        )
        _set_fields_set(event, set(_SET))
        _set_extra(event, {})
        _set_private(event, None)
        return event

    def payload(self) -> bytes:
        """The event as a line of a ``riskpipe publish`` file (times in RFC 3339 form)."""
        return orjson.dumps(self.fields())


_SOURCES: set[str] = set()
_TENANTS: set[str] = set()
"""Sources and tenants that matched their pattern: a producer has few of each."""
_KNOWN_LIMIT = 1024
_ENTITIES: set[str] = set()
"""Entities that matched the subject's pattern: many, but most observations are of a known one."""
_ENTITIES_LIMIT = 65_536


def _known(
    known: set[str], pattern: re.Pattern[str], value: str, limit: int = _KNOWN_LIMIT
) -> bool:
    """Whether ``value`` (a ``str``) matches ``pattern``, remembering up to ``limit`` that did."""
    if value in known:
        return True
    if not pattern.fullmatch(value):
        return False
    if len(known) >= limit:  # a producer with more: start over, stay bounded
        known.clear()
    known.add(value)
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What really happened to one entity: ground truth the learning loop learns from.

    ``outcome`` is a lowercase token (``fraud_confirmed``, ``chargeback``,
    ``benign``, ``account_takeover``); ``positive`` is true when it confirms
    risk and false when it clears the entity. Idempotent like evidence (same
    ``source`` and ``id``: stored once); ``observed_at`` defaults to ``time``.
    """

    tenant: str
    entity: str
    outcome: str
    positive: bool
    id: str
    source: str
    time: datetime
    observed_at: datetime | None = None
    description: str | None = None

    event_type = OUTCOME_RECORDED

    def fields(self) -> dict[str, Any]:
        """The event's attributes and data, as ``riskpipe publish`` reads them from a line."""
        data: dict[str, Any] = {"outcome": self.outcome, "positive": self.positive}
        if self.observed_at is not None:
            data["observed_at"] = self.observed_at.isoformat()
        if self.description is not None:
            data["description"] = self.description
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": OUTCOME_RECORDED,
            "subject": self.entity,
            "tenant": self.tenant,
            "time": self.time,
            "data": data,
        }

    def plain_event(self) -> None:
        """Outcomes are few: always validated in full (see :meth:`Observation.plain_event`)."""

    def payload(self) -> bytes:
        """The event as a line of a ``riskpipe publish`` file (times in RFC 3339 form)."""
        return orjson.dumps(self.fields())


class Recorded(NamedTuple):
    """An observation the store holds: its stream sequence, and whether it was there already.

    A named tuple (``sequence, duplicate = recorded`` works too): one is made
    for every observation, and a tuple is made in a third of a frozen
    dataclass's time.
    """

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
