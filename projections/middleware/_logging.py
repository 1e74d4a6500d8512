"""Logging context: every log line inside handling names the message it is about."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.logctx import message_fields

if TYPE_CHECKING:
    from projections._message import Handler, Message, Result

__all__ = ["log_context"]


def log_context(handler: Handler) -> Handler:
    """Bind projection, stream sequence, subject, tenant, entity and delivery count."""

    async def bound(message: Message) -> Result:
        delivery = message.delivery
        message.log.update(
            projection=message.projection,
            stream_seq=delivery.stream_seq,
            subject=delivery.subject,
            tenant=message.tenant,
            entity=message.entity,
            delivery_count=delivery.num_delivered,
        )
        with message_fields(message.log):
            return await handler(message)

    return bound
