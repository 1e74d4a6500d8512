"""Event type registry: which ``type`` values exist, what their data must be, how they evolve.

A type's name ends in its version (``shop.order.placed.v1``). Adding an
optional field keeps the version; any other change is a new type, registered
beside the old one with an *upcaster* from the old: a pure function from a
validated old data model to the new one. Stored events are never rewritten:
readers that ask for it (:meth:`EventSchemas.decode`, :meth:`EventSchemas.upcast`)
get every event in its type's latest version, and appending still validates
an event by the type it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel, ValidationError

from eventstore._binary import binary_fields, binary_headers
from eventstore._codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES, decode_json
from eventstore._envelope import ENVELOPE_HINTS, CloudEvent
from eventstore._tokens import PATTERN_HINTS
from eventstore.errors import (
    InvalidUpcasterError,
    MalformedJSONError,
    SchemaViolationError,
    UnknownEventTypeError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventstore._binary import BinaryHeaders

__all__ = ["EventSchemas", "EventType", "Upcaster"]

_ENVELOPE = "envelope"
_HINTS = {**PATTERN_HINTS, **ENVELOPE_HINTS}

Upcaster: TypeAlias = Callable[[BaseModel], BaseModel]
"""From a validated data model of one version to the next version's: pure and deterministic."""


@dataclass(frozen=True, slots=True)
class EventType:
    """A registered event type: its name, its data model, and its stream category."""

    name: str
    data_model: type[BaseModel]
    category: str


def _problems(exc: ValidationError, prefix: str = "", *, binary: bool = False) -> list[str]:
    """One line per error, naming the field; in binary mode an attribute by its ``ce-`` header."""
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        if not err["loc"] and (attribute := (err.get("ctx") or {}).get("attribute")):
            where = str(attribute)  # an extension attribute, checked with the envelope
        if binary and where not in {"event", "data"} and not where.startswith("data."):
            where = f"ce-{where}"
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            name = str(err["loc"][-1]) if err["loc"] else "value"
            pattern = (err.get("ctx") or {}).get("pattern", "")
            hint = _HINTS.get(pattern, f"must match {pattern}")
            message = f"invalid {name} {err['input']!r}: {hint}"
        out.append(f"{where or 'event'}: {message}")
    return out


class EventSchemas:
    """The registry of event types, and the strict parser that uses it.

    ``parse`` turns untrusted bytes into a validated :class:`CloudEvent` whose
    ``data`` is normalised by the type's data model (defaults filled in), so the
    stored form of an event is canonical.
    """

    def __init__(self, *, default_type: str | None = None) -> None:
        self._types: dict[str, EventType] = {}
        self._upcasters: dict[str, tuple[str, Upcaster]] = {}
        self.default_type = default_type

    def register(self, name: str, data_model: type[BaseModel], *, category: str) -> None:
        """Register an event type under ``name`` with its data model."""
        self._types[name] = EventType(name, data_model, category)

    def register_upcaster(self, source: str, target: str, upcaster: Upcaster) -> None:
        """Read events of type ``source`` as type ``target``, their data through ``upcaster``.

        Both types must be registered, in one category (a new version of an
        event is stored where the old one is), and ``source`` may have one
        upcaster only: versions form a chain, read to its end. ``upcaster``
        must be deterministic (an audit re-derives from its output) and
        return an instance of ``target``'s data model.

        Raises:
            InvalidUpcasterError: a type is unknown, the categories differ,
                ``source`` has an upcaster already, or the chain would loop.
        """
        for name in (source, target):
            if name not in self._types:
                raise InvalidUpcasterError(source, target, f"{name} is not a registered type")
        if self._types[source].category != self._types[target].category:
            raise InvalidUpcasterError(source, target, "the types are in different categories")
        if source in self._upcasters:
            raise InvalidUpcasterError(
                source, target, f"{source} is upcast to {self._upcasters[source][0]} already"
            )
        if self.latest(target) == source:
            raise InvalidUpcasterError(source, target, f"{target} is read as {source}: a loop")
        self._upcasters[source] = (target, upcaster)

    def latest(self, name: str) -> str:
        """The type events of type ``name`` are read as: the end of its upcaster chain."""
        seen = {name}
        while (step := self._upcasters.get(name)) is not None and step[0] not in seen:
            name = step[0]
            seen.add(name)
        return name

    def upcast(self, event: CloudEvent, data: BaseModel) -> tuple[CloudEvent, BaseModel]:
        """``event`` and its typed ``data`` in the latest version of its type.

        An event of a type with no upcaster is returned as it is. Otherwise
        each upcaster of the chain is applied in turn, and the envelope names
        the latest type and holds its data (as :meth:`normalise` would write
        it); the stored event is not touched.

        Raises:
            InvalidUpcasterError: an upcaster returned something other than its
                target's data model.
        """
        return self._upcast(event, data, fresh=False)

    def _upcast(
        self, event: CloudEvent, data: BaseModel, *, fresh: bool
    ) -> tuple[CloudEvent, BaseModel]:
        """:meth:`upcast`; a ``fresh`` envelope (no one else holds it yet) is updated in place."""
        if event.type not in self._upcasters:
            return event, data
        name = event.type
        while (step := self._upcasters.get(name)) is not None:
            target, upcaster = step
            data = upcaster(data)
            if not isinstance(data, self._types[target].data_model):
                raise InvalidUpcasterError(
                    name, target, f"the upcaster returned a {type(data).__name__}"
                )
            name = target
        normal = data.__pydantic_serializer__.to_python(
            data, mode="json", exclude_none=True, exclude_unset=True
        )
        if not fresh:
            return event.model_copy(update={"type": name, "data": normal}), data
        event.__dict__["type"] = name  # frozen: set once, as validation would have
        event.__dict__["data"] = normal
        return event, data

    def get(self, name: str) -> EventType:
        """The registered type called ``name``.

        Raises:
            UnknownEventTypeError: no such type is registered.
        """
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventTypeError(name, sorted(self._types)) from None

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._types)

    def parse(
        self,
        payload: bytes,
        *,
        headers: BinaryHeaders = None,
        max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> CloudEvent:
        """Decode, validate and normalise one event from ``payload`` (and its message's headers).

        With ``headers`` holding ``ce-`` headers the message is in the NATS
        binding's binary mode (see :mod:`eventstore._binary`): the attributes
        are those headers and ``payload`` is the data; otherwise ``payload``
        is the structured event.

        Raises:
            DecodeError: any subclass, naming what is wrong with the message.
        """
        if (found := binary_headers(headers)) is not None:
            fields = binary_fields(found, payload, max_bytes=max_bytes, max_depth=max_depth)
            return self.normalise(self._envelope(fields, binary=True))
        raw = decode_json(payload, max_bytes=max_bytes, max_depth=max_depth)
        if not isinstance(raw, dict):
            raise MalformedJSONError(f"an event must be a JSON object, not {type(raw).__name__}")
        return self.validate(raw)

    def decode(
        self,
        payload: bytes,
        *,
        headers: BinaryHeaders = None,
        max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        upcast: bool = True,
    ) -> tuple[CloudEvent, BaseModel]:
        """Decode and validate one event for a consumer: the envelope and its typed data.

        Unlike :meth:`parse` the envelope's ``data`` is left as stored (no
        normalisation): the typed data is what a consumer works with.
        ``headers`` as for :meth:`parse`. The event is validated as the type
        it names, then, with ``upcast`` (the default), read in its type's
        latest version (:meth:`upcast`).

        Raises:
            DecodeError: any subclass, naming what is wrong with the message.
        """
        binary = (found := binary_headers(headers)) is not None
        if found is not None:
            raw = binary_fields(found, payload, max_bytes=max_bytes, max_depth=max_depth)
        else:
            raw = decode_json(payload, max_bytes=max_bytes, max_depth=max_depth)
        if not isinstance(raw, dict):
            raise MalformedJSONError(f"an event must be a JSON object, not {type(raw).__name__}")
        data = raw.get("data")
        # The envelope is validated without its data, which the typed model validates
        # next: decoded JSON is JSON, checking it value by value as such is redundant.
        event = self._envelope(raw if data is None else {**raw, "data": None}, binary=binary)
        if data is not None:
            if not isinstance(data, dict):
                raise SchemaViolationError(event.type, ["data: must be a JSON object"])
            event.__dict__["data"] = data  # frozen: set once, as validation would have
        typed = self.typed_data(event)
        return self._upcast(event, typed, fresh=True) if upcast else (event, typed)

    def validate(self, raw: Mapping[str, Any]) -> CloudEvent:
        """Validate an already-decoded event object.

        Raises:
            SchemaViolationError: the envelope or the data does not match.
            UnknownEventTypeError: the type is not registered.
        """
        return self.normalise(self.envelope(raw))

    def envelope(self, raw: Mapping[str, Any]) -> CloudEvent:
        """Validate an event's envelope only, its ``data`` kept as given.

        The data is validated by :meth:`normalise`, or by the store when the
        event is appended: the same checks, and the same errors, as :meth:`validate`.

        Raises:
            SchemaViolationError: the envelope does not match.
        """
        return self._envelope(raw)

    def envelope_then_data(self, raw: Mapping[str, Any]) -> CloudEvent:
        """:meth:`envelope`, with ``data`` put in place as given instead of checked as JSON.

        For a caller that appends the event next: the store validates the data
        by its type's model as it encodes the event (:meth:`typed_data`, the
        errors of :meth:`validate`), a check that subsumes the envelope's "any
        JSON object" one, which then costs as much as the rest of the envelope.

        Raises:
            SchemaViolationError: the envelope does not match, or ``data`` is not a dict.
        """
        data = raw.get("data")
        if data is None:
            return self._envelope(raw)
        event = self._envelope({**raw, "data": None})
        if not isinstance(data, dict):
            raise SchemaViolationError(event.type, ["data: must be a JSON object"])
        event.__dict__["data"] = data  # frozen: set once, as validation would have
        return event

    def _envelope(self, raw: Mapping[str, Any], *, binary: bool = False) -> CloudEvent:
        """The validated envelope of ``raw``; errors name ``ce-`` headers in binary mode.

        Raises:
            SchemaViolationError: the envelope does not match.
        """
        fields = dict(raw)
        if "type" not in fields and self.default_type is not None:
            fields["type"] = self.default_type
        try:
            return CloudEvent.model_validate(fields)
        except ValidationError as exc:
            problems = _problems(exc, binary=binary)
            raise SchemaViolationError(str(fields.get("type", _ENVELOPE)), problems) from exc

    def normalise(self, event: CloudEvent) -> CloudEvent:
        """``event`` with its data validated and defaults filled in by its type's model.

        Raises:
            SchemaViolationError: the data does not match the model.
            UnknownEventTypeError: the type is not registered.
        """
        normal = self.typed_data(event).model_dump(
            mode="json", exclude_none=True, exclude_unset=True
        )
        return event if normal == event.data else event.model_copy(update={"data": normal})

    def typed_data(self, event: CloudEvent, spec: EventType | None = None) -> BaseModel:
        """The event's data, validated by its type's model (``spec``, when looked up already).

        Raises:
            SchemaViolationError: the data does not match the model.
            UnknownEventTypeError: the type is not registered.
        """
        spec = spec or self.get(event.type)
        try:
            return spec.data_model.model_validate(
                event.data if event.data is not None else {},
                context={"event_time": event.time},
            )
        except ValidationError as exc:
            raise SchemaViolationError(event.type, _problems(exc, "data")) from exc

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of the envelope and of every registered type's data.

        The envelope's ``type`` is optional when the registry has a default type,
        as :meth:`parse` fills it in.
        """
        out: dict[str, dict[str, Any]] = {_ENVELOPE: self._envelope_schema()}
        for name in self.names():
            out[name] = self._types[name].data_model.model_json_schema()
        return out

    def event_json_schema(self, name: str) -> dict[str, Any]:
        """JSON Schema (2020-12) of one whole event of type ``name``, as :meth:`parse` takes it.

        The envelope with ``type`` fixed to ``name`` (optional when ``name`` is
        the default type) and ``data`` described by the type's model (required
        when that model has required fields). What JSON Schema cannot say is
        checked on top: the byte size, the nesting depth and duplicate keys.

        Raises:
            UnknownEventTypeError: no such type is registered.
        """
        data = self.get(name).data_model.model_json_schema()
        event = self._envelope_schema()
        defs = {**event.pop("$defs", {}), **data.pop("$defs", {})}
        event["properties"]["type"] = {"const": name, "default": name, "title": "Type"}
        required = [field for field in event["required"] if field != "type"]
        if name != self.default_type:
            required.append("type")
        if data.get("required"):
            required.append("data")
        else:
            data = {"anyOf": [data, {"type": "null"}], "default": None}
        event["properties"]["data"] = data
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **event,
            "title": f"{name} event",
            "required": required,
            **({"$defs": defs} if defs else {}),
        }

    def _envelope_schema(self) -> dict[str, Any]:
        schema = CloudEvent.model_json_schema()
        if self.default_type is not None:
            schema["required"] = [field for field in schema["required"] if field != "type"]
            schema["properties"]["type"]["default"] = self.default_type
        return schema
