"""Retry: transient failures are retried in-process, then redelivered later with backoff."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from projections._message import Result
from projections.errors import RetriesExhaustedError, is_transient

if TYPE_CHECKING:
    from collections.abc import Callable

    from projections._message import Handler, Message

__all__ = ["retry"]

_log = structlog.get_logger(__name__)


def retry(
    *, attempts: int = 3, first_wait: float = 0.05, max_wait: float = 1.0,
    redelivery_backoff: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0),
) -> Callable[[Handler], Handler]:  # fmt: skip
    """Retry transient failures ``attempts`` times in-process (exponential backoff, jitter).

    If they persist: on the message's last delivery raise
    :class:`RetriesExhaustedError` (the dead-letter middleware takes it), otherwise
    ask for redelivery after the next step of ``redelivery_backoff``: never a bare
    nak, so a failing message cannot spin hot.
    """

    def middleware(handler: Handler) -> Handler:
        async def retried(message: Message) -> Result:
            try:  # the first attempt outside tenacity: it is cheap when nothing fails
                return await handler(message)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempts <= 1:
                    return _redeliver(message, exc, redelivery_backoff)
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(is_transient),
                    stop=stop_after_attempt(attempts - 1),
                    wait=wait_exponential_jitter(multiplier=first_wait, max=max_wait),
                    reraise=True,
                ):
                    with attempt:
                        return await handler(message)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return _redeliver(message, exc, redelivery_backoff)
            raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

        return retried

    return middleware


def _redeliver(message: Message, exc: Exception, backoff: tuple[float, ...]) -> Result:
    deliveries = message.delivery.num_delivered
    if message.last_delivery:
        raise RetriesExhaustedError(deliveries, exc) from exc
    delay = backoff[min(deliveries - 1, len(backoff) - 1)] if backoff else 1.0
    _log.warning(
        "projection.retry_later", delay=delay, error_type=type(exc).__name__, error=str(exc)
    )
    return Result.retry(delay, f"{type(exc).__name__}: {exc}")
