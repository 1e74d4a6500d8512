"""Wiring the SQL read model: which streams feed it, its database, its metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.readmodel import (
    Database,
    ReadModel,
    ReadModelMetrics,
    ReadModelReader,
    Source,
    apply_audit,
    apply_dead_letter,
    apply_review,
    assessments_of,
    latest_assessments_of,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from eventstore import EventStore
    from riskpipe.settings import Settings

__all__ = ["open_database", "open_reader", "read_model", "readmodel_sources"]


def readmodel_sources(store: EventStore, settings: Settings) -> list[Source]:
    """The streams the read model follows, in the order each pass reads them."""
    config = store.config
    return [
        Source(
            "risk",
            config.stream_for("risk"),
            assessments_of(settings.projection),
            apply_many=latest_assessments_of(settings.projection),
        ),
        Source("dlq", config.stream_for("dlq"), apply_dead_letter),
        Source("audit", config.stream_for("audit"), apply_audit),
        Source("review", config.stream_for("review"), apply_review),
    ]


def open_database(settings: Settings) -> Database:
    """The read model's database (``RISKPIPE_DATABASE_URL``, else a SQLite file in data_dir).

    Raises:
        DatabaseUrlError: the URL cannot be used.
    """
    return Database(settings.readmodel_url)


def read_model(
    store: EventStore,
    db: Database,
    settings: Settings,
    registry: CollectorRegistry | None = None,
) -> ReadModel:
    """The read model of ``store``'s log in ``db``, with metrics on ``registry`` if given."""
    return ReadModel(
        db,
        store,
        readmodel_sources(store, settings),
        metrics=ReadModelMetrics(registry) if registry is not None else None,
        batch_size=settings.readmodel_batch,
        poll_interval=settings.readmodel_poll_seconds,
    )


def open_reader(settings: Settings) -> ReadModelReader:
    """Queries on the read model, for the HTTP API (close it with ``reader.db.dispose()``).

    Raises:
        DatabaseUrlError: the URL cannot be used.
    """
    return ReadModelReader(open_database(settings))
