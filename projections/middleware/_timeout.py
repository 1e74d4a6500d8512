"""Timeout: a handler that hangs becomes a transient failure instead of a stuck worker."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from projections.errors import HandlerTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections._message import Handler, Message, Result

__all__ = ["timeout"]


def timeout(seconds: float) -> Callable[[Handler], Handler]:
    """Bound each handler call by ``seconds``; raise :class:`HandlerTimeoutError` after."""

    def middleware(handler: Handler) -> Handler:
        async def bounded(message: Message) -> Result:
            try:
                async with asyncio.timeout(seconds):
                    return await handler(message)
            except TimeoutError as exc:
                raise HandlerTimeoutError(seconds) from exc

        return bounded

    return middleware
