"""Copies of stored messages, appended to another store strictly in order.

A copy keeps the original's payload and header lines byte for byte; only its
``Nats-*`` lines are replaced, by the key it is deduplicated under and two
fences: ``Nats-Expected-Last-Sequence``, the sequence the stream must end at
for the copy to be stored, and ``Nats-Expected-Last-Msg-Id``, the key of the
copy sent just before it (the first of a run has the sequence fence alone:
its caller knows what is stored there). A run of copies so fenced is stored
in order and unbroken, or not at all from the first that fails: never out of
order after a failed one, never interleaved with another writer's messages
(one that takes a failed copy's place breaks the chain of keys), and never
twice, however long ago the first copy was made (a duplicate window forgets;
a fence does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from eventstore._append import MSG_ID, resent_headers, sendable_headers
from eventstore._jetstream._transport import HeaderBlock, OutboundMessage, header_block

if TYPE_CHECKING:
    from eventstore._jetstream._client import RawMessage

__all__ = ["EXPECTED_LAST_MSG_ID", "EXPECTED_LAST_SEQUENCE", "Copy", "copy_of"]

EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"


class Copy(NamedTuple):
    """A stored message to append again: where to publish it, its bytes, its headers, its key.

    ``headers`` holds the original's header lines without its ``Nats-*``
    ones; ``msg_id`` is the key the copy is deduplicated under.
    """

    subject: str
    payload: bytes
    headers: HeaderBlock
    msg_id: str

    def message(self, after: int, previous: str | None = None) -> OutboundMessage:
        """The message that stores this copy only if its stream then ends at sequence ``after``.

        With ``previous``, only if that message's key is ``previous`` too.
        """
        fences = {MSG_ID: self.msg_id, EXPECTED_LAST_SEQUENCE: str(after)}
        if previous is not None:
            fences[EXPECTED_LAST_MSG_ID] = previous
        added = "".join(f"{name}: {value}\r\n" for name, value in fences.items()) + "\r\n"
        block = self.headers.block[:-2] + added.encode()
        return OutboundMessage(
            self.subject, self.payload, HeaderBlock(block, {**self.headers, **fences})
        )


def copy_of(raw: RawMessage, subject: str, msg_id: str) -> Copy:
    """A copy of ``raw`` to publish on ``subject`` under the key ``msg_id``.

    The header lines are kept byte for byte (duplicates, case and order
    included), but for the ``Nats-*`` ones: the server acts on those, and the
    original's message id or expected sequence must not decide the copy's fate.
    """
    if raw.header_block is not None:
        headers = resent_headers(raw.header_block, {})
    else:  # read through nats-py's public API: the parsed headers are all there is
        kept = sendable_headers(raw.headers)
        headers = HeaderBlock(header_block(kept) if kept else b"NATS/1.0\r\n\r\n", kept)
    return Copy(subject, raw.data, headers, msg_id)
