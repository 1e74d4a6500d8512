"""The boundary where nats-py exceptions become event store errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

from eventstore.errors import (
    EventStoreError,
    JetStreamAPIError,
    NotProvisionedError,
    StoreTimeoutError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["UNAVAILABLE", "map_errors"]

UNAVAILABLE: tuple[type[Exception], ...] = (
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.StaleConnectionError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoServersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    ConnectionError,
)


@contextmanager
def map_errors(what: str) -> Iterator[None]:
    """Re-raise nats-py errors met while doing ``what`` as :class:`EventStoreError`.

    Raises:
        StoreTimeoutError: the server did not answer in time.
        StoreUnavailableError: not connected, or nothing answered.
        NotProvisionedError: the stream or consumer does not exist.
        JetStreamAPIError: JetStream refused the request.
        EventStoreError: any other client failure.
    """
    try:
        yield
    except EventStoreError:
        raise
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise StoreTimeoutError(f"{what}: timed out waiting for the server") from exc
    except UNAVAILABLE as exc:
        raise StoreUnavailableError(f"{what}: NATS unavailable ({exc})") from exc
    except nats.js.errors.NotFoundError as exc:
        raise NotProvisionedError(f"{what}: {exc.description}; run `riskpipe init`") from exc
    except nats.js.errors.APIError as exc:
        raise JetStreamAPIError(
            what, exc.code or 0, exc.err_code or 0, exc.description or "no description"
        ) from exc
    except nats.errors.Error as exc:
        raise EventStoreError(f"{what}: {exc}") from exc
