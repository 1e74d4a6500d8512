"""Upcasters: an event type's later versions, and reading every stored event as the latest."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict

from eventstore import EventSchemas
from eventstore.errors import InvalidUpcasterError, SchemaViolationError


class PlacedV1(BaseModel):
    """An order as first recorded: a whole amount."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: int
    note: str | None = None


class PlacedV2(BaseModel):
    """An order in cents, with an optional currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cents: int
    note: str | None = None
    currency: str | None = None


class PlacedV3(BaseModel):
    """An order whose currency is never missing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cents: int
    note: str | None = None
    currency: str = "EUR"


V1, V2, V3 = "shop.order.placed.v1", "shop.order.placed.v2", "shop.order.placed.v3"


def _v1_to_v2(data: BaseModel) -> BaseModel:
    assert isinstance(data, PlacedV1)
    values = {"cents": data.amount * 100, "note": data.note}
    fields_set = {"cents"} | ({"note"} & data.model_fields_set)
    return PlacedV2.model_construct(fields_set, **values)


def _v2_to_v3(data: BaseModel) -> BaseModel:
    assert isinstance(data, PlacedV2)
    return PlacedV3(cents=data.cents, note=data.note, currency=data.currency or "EUR")


def _schemas(*, chain: bool = True) -> EventSchemas:
    schemas = EventSchemas()
    schemas.register(V1, PlacedV1, category="orders")
    schemas.register(V2, PlacedV2, category="orders")
    schemas.register(V3, PlacedV3, category="orders")
    if chain:
        schemas.register_upcaster(V1, V2, _v1_to_v2)
        schemas.register_upcaster(V2, V3, _v2_to_v3)
    return schemas


def _line(event_type: str, data: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "id": "o1",
            "source": "shop",
            "type": event_type,
            "subject": "order-1",
            "time": "2026-11-29T08:00:00Z",
            "data": data,
        }
    ).encode()


def test_decode_reads_every_version_as_the_latest_through_the_chain() -> None:
    """v1 goes through both upcasters; v3 is as stored; the envelope names the latest type."""
    schemas = _schemas()
    assert [schemas.latest(name) for name in (V1, V2, V3)] == [V3, V3, V3]
    event, data = schemas.decode(_line(V1, {"amount": 7, "note": "gift"}))
    assert data == PlacedV3(cents=700, note="gift", currency="EUR")
    assert (event.type, event.data) == (V3, {"cents": 700, "note": "gift", "currency": "EUR"})
    event, data = schemas.decode(_line(V3, {"cents": 5, "currency": "USD"}))
    assert (event.type, data) == (V3, PlacedV3(cents=5, currency="USD"))


def test_decode_validates_by_the_stored_type_before_upcasting() -> None:
    """A v1 event with v2's fields is refused as v1, not let through as v2."""
    with pytest.raises(SchemaViolationError, match=r"shop\.order\.placed\.v1: data\.cents"):
        _schemas().decode(_line(V1, {"amount": 1, "cents": 100}))


def test_without_upcast_and_in_parse_the_event_stays_as_stored() -> None:
    """Appending and ``upcast=False`` see the version the producer wrote: history is kept."""
    schemas = _schemas()
    event, data = schemas.decode(_line(V1, {"amount": 2}), upcast=False)
    assert (event.type, data) == (V1, PlacedV1(amount=2))
    assert schemas.parse(_line(V1, {"amount": 2})).type == V1


def test_upcast_keeps_which_fields_were_set() -> None:
    """An upcaster using ``model_construct`` keeps the fields set; unset ones are not written."""
    schemas = EventSchemas()
    schemas.register(V1, PlacedV1, category="orders")
    schemas.register(V2, PlacedV2, category="orders")
    schemas.register_upcaster(V1, V2, _v1_to_v2)
    event, data = schemas.decode(_line(V1, {"amount": 3}))
    assert data.model_fields_set == {"cents"}
    assert event.data == {"cents": 300}


def test_an_event_type_without_upcaster_is_returned_unchanged() -> None:
    """The same objects come back: nothing is copied for the common case."""
    schemas = _schemas(chain=False)
    event, data = schemas.decode(_line(V1, {"amount": 1}), upcast=False)
    assert schemas.upcast(event, data) == (event, data)
    assert schemas.upcast(event, data)[0] is event


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("shop.order.placed.v0", V2, r"shop\.order\.placed\.v0 is not a registered type"),
        (V1, "shop.order.placed.v9", r"v9 is not a registered type"),
        (V1, "shop.payment.v1", "the types are in different categories"),
        (V1, V3, r"v1 is upcast to shop\.order\.placed\.v2 already"),
        (V3, V1, r"shop\.order\.placed\.v1 is read as shop\.order\.placed\.v3: a loop"),
    ],
)
def test_an_upcaster_that_cannot_be_registered_is_refused(
    source: str, target: str, message: str
) -> None:
    """Unknown types, another category, a second upcaster, a loop: each a typed error."""
    schemas = _schemas()
    schemas.register("shop.payment.v1", PlacedV1, category="payments")
    with pytest.raises(InvalidUpcasterError, match=message):
        schemas.register_upcaster(source, target, _v1_to_v2)


def test_an_upcaster_returning_the_wrong_model_is_a_typed_error() -> None:
    """An upcaster's output is checked against its target's model."""
    schemas = _schemas(chain=False)
    schemas.register_upcaster(V1, V2, lambda data: data)
    with pytest.raises(InvalidUpcasterError, match="the upcaster returned a PlacedV1"):
        schemas.decode(_line(V1, {"amount": 1}))
