"""Composition: the event types riskpipe knows, and how the store is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore import EventSchemas, EventStore, StoreConfig
from projections.risk import build_schemas as _risk_schemas

if TYPE_CHECKING:
    from riskpipe.settings import Settings

__all__ = ["build_schemas", "connect_store", "store_config"]


def build_schemas() -> EventSchemas:
    """The registry of every event type riskpipe reads or writes."""
    return _risk_schemas()


def store_config(settings: Settings) -> StoreConfig:
    """The store's names and limits, from settings."""
    return StoreConfig(
        prefix=settings.subject_prefix,
        replicas=settings.replicas,
        max_payload_bytes=settings.max_payload_bytes,
        duplicate_window=settings.duplicate_window,
    )


async def connect_store(settings: Settings, *, name: str = "riskpipe") -> EventStore:
    """Connect an event store to ``settings.nats_url``.

    Raises:
        StoreUnavailableError: NATS cannot be reached.
    """
    return await EventStore.connect(
        settings.nats_url, schemas=build_schemas(), config=store_config(settings), name=name
    )
