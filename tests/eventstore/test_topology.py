"""A store's topology is the application's: any streams, named by their specs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from eventstore import CloudEvent, EventSchemas, EventStore, StoreConfig, StreamSpec
from eventstore.errors import UnknownCategoryError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from riskpipe.server import NatsServer

ORDERS = StreamSpec(category="orders", name="ORDERS", atomic=True, partitioned=True)
PAYMENTS = StreamSpec(category="payments", name="PAYMENTS", payload_factor=2)


class Order(BaseModel):
    """The data of every event of the shop."""

    model_config = ConfigDict(extra="forbid")

    amount: int


def _schemas() -> EventSchemas:
    """Orders and payments, and refunds that no stream holds."""
    schemas = EventSchemas()
    schemas.register("shop.order.placed.v1", Order, category="orders")
    schemas.register("shop.payment.taken.v1", Order, category="payments")
    schemas.register("shop.refund.made.v1", Order, category="refunds")  # no stream holds it
    return schemas


def _event(type_: str, id_: str, entity: str = "o1") -> CloudEvent:
    """A shop event of ``type_`` for order ``entity``."""
    return CloudEvent(
        id=id_,
        source="shop",
        type=type_,
        subject=entity,
        tenant="acme",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        data={"amount": 3},
    )


@pytest.fixture
async def shop(nats_server: NatsServer) -> AsyncIterator[EventStore]:
    """A provisioned store of the shop's two streams, orders partitioned in 4."""
    config = StoreConfig(prefix="shop", streams=(ORDERS, PAYMENTS), partitions=4)
    store = await EventStore.connect(nats_server.url, schemas=_schemas(), config=config)
    async with store:
        await store.provision()
        yield store


async def test_a_store_of_other_streams_appends_and_reads_by_category(shop: EventStore) -> None:
    """Each category goes to its stream; only the partitioned one stores the partition."""
    placed = await shop.append(_event("shop.order.placed.v1", "1"))
    taken = await shop.append(_event("shop.payment.taken.v1", "2"))
    assert (placed.stream, taken.stream) == ("ORDERS", "PAYMENTS")
    stored = shop.config.stored_subject("orders", "acme", "o1")
    assert stored.startswith("shop.orders.")
    assert stored.count(".") == 4  # the partition is in
    assert shop.config.stored_subject("payments", "acme", "o1") == "shop.payments.acme.o1"
    orders = [rec.event.id async for rec in shop.read("acme", "o1") if rec.event is not None]
    payments = [
        rec.event.id
        async for rec in shop.read("acme", "o1", category="payments")
        if rec.event is not None
    ]
    assert (orders, payments) == (["1"], ["2"])
    assert shop.payload_limit("payments") == 2 * shop.payload_limit("orders")


async def test_an_event_of_a_category_no_stream_holds_is_refused_by_name(shop: EventStore) -> None:
    """A type registered for a category no stream holds: a typed error, nothing stored."""
    with pytest.raises(UnknownCategoryError, match=r"'refunds'.*orders, payments"):
        await shop.append(_event("shop.refund.made.v1", "3"))
    assert (await shop.stream_state("ORDERS"))["messages"] == 0


def test_two_streams_may_not_share_a_category_or_a_name_or_both_be_partitioned() -> None:
    """A topology that could put one event in two places is refused when it is made."""
    with pytest.raises(ValidationError, match="two streams have the category orders"):
        StoreConfig(streams=(ORDERS, ORDERS.model_copy(update={"name": "OTHER"})))
    with pytest.raises(ValidationError, match="two streams have the name ORDERS"):
        StoreConfig(streams=(ORDERS, PAYMENTS.model_copy(update={"name": "ORDERS"})))
    with pytest.raises(ValidationError, match="at most one stream can be partitioned"):
        StoreConfig(streams=(ORDERS, PAYMENTS.model_copy(update={"partitioned": True})))


def test_asking_for_a_stream_the_config_lacks_says_which_it_has() -> None:
    """Lookups of what the topology lacks name what it has."""
    config = StoreConfig(streams=(PAYMENTS,))
    with pytest.raises(ValueError, match=r"no stream holds 'orders' events \(categories: payments"):
        config.stream_for("orders")
    with pytest.raises(ValueError, match="no stream of the store config is partitioned"):
        config.partition_filter(0)
    assert config.stored("shop.payments.acme.o1") == "shop.payments.acme.o1"
    with pytest.raises(ValueError, match="names no streams"):
        _ = StoreConfig().default_stream
