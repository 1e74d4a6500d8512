"""Back-pressure: an open circuit breaker pauses consumption instead of burning deliveries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from analyzers.errors import DependencyUnavailable
from projections._message import Result

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections._message import Handler, Message

__all__ = ["pause_on_open_breaker"]

_log = structlog.get_logger(__name__)


def pause_on_open_breaker(probe_after: float = 1.0) -> Callable[[Handler], Handler]:
    """Turn :class:`DependencyUnavailable` into a pause: hold the message, stop fetching."""

    def middleware(handler: Handler) -> Handler:
        async def paused(message: Message) -> Result:
            try:
                return await handler(message)
            except DependencyUnavailable as exc:
                delay = max(probe_after, float(getattr(exc, "retry_after", 0.0) or 0.0))
                _log.warning("projection.paused", reason=str(exc), retry_in=delay)
                return Result.pause(delay, str(exc))

        return paused

    return middleware
