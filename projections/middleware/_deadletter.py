"""Dead letters: permanent failures and exhausted retries go to the DLQ, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from analyzers.errors import DependencyUnavailable
from projections._deadletter import dead_letter
from projections._message import Result
from projections.errors import RetriesExhaustedError, is_transient

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from eventstore import StoreConfig
    from projections._message import Handler, Message

__all__ = ["dead_letters"]

_log = structlog.get_logger(__name__)


def dead_letters(
    config: StoreConfig,
    clock: Callable[[], datetime],
    *,
    already_handled: Callable[[Message], Awaitable[bool]] | None = None,
    max_bytes: Callable[[], int] | None = None,
) -> Callable[[Handler], Handler]:
    """Turn a permanent error (or :class:`RetriesExhaustedError`) into a dead letter.

    Transient errors pass through untouched: they belong to the retry
    middleware inside this one. Before dead-lettering a message whose retries
    ran out, ``already_handled`` is asked whether another worker has handled it
    meanwhile (then it is skipped, so it never has both an effect and a dead letter).
    ``max_bytes`` says how large a dead letter may be when one is made (the
    store's ``payload_limit("dlq")``): a larger original is copied in part.
    """

    def middleware(handler: Handler) -> Handler:
        async def guarded(message: Message) -> Result:
            try:
                return await handler(message)
            except Exception as exc:
                if is_transient(exc) or isinstance(exc, DependencyUnavailable):
                    raise
                permanent = not isinstance(exc, RetriesExhaustedError)
                if not permanent and already_handled is not None and await already_handled(message):
                    return Result.commit((), "duplicate_skipped")
                cause = exc.cause if isinstance(exc, RetriesExhaustedError) else exc
                _log.warning(
                    "projection.dead_lettered",
                    error_type=type(cause).__name__,
                    error=str(cause)[:500],
                    permanent=permanent,
                )
                output = dead_letter(
                    message,
                    cause,
                    permanent=permanent,
                    now=clock(),
                    config=config,
                    max_bytes=max_bytes() if max_bytes is not None else None,
                )
                return Result.commit((output,), "dead_lettered")

        return guarded

    return middleware
