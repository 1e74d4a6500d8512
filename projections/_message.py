"""What flows through a projection: a message in, a decision out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from eventstore import ANY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import BaseModel

    from eventstore import CloudEvent, Delivery, ExpectedVersion

__all__ = [
    "CHAIN",
    "Handler",
    "Message",
    "Middleware",
    "Outcome",
    "Output",
    "Prepare",
    "Result",
    "stored_headers",
]

CHAIN: Final = "chain"
"""Expected version of an output that follows another one to the same subject in one result:
the version that earlier output was stored at (known only once it is committed)."""

Outcome: TypeAlias = str
"""How a message ended, a label of the runner's metrics. The runtime's own: ``duplicate_skipped``,
``dead_lettered``, ``retried``, ``paused``; a projection names what it did (``assessed``,
``case_opened``)."""


@dataclass(frozen=True, slots=True)
class Output:
    """An event a handler wants committed before its input is acknowledged."""

    event: CloudEvent
    expected_version: ExpectedVersion | Literal["chain"] = ANY
    subject: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: BaseModel | None = None
    """The event's data as its type's model, when the handler built it (not re-validated)."""


@dataclass(frozen=True, slots=True)
class Result:
    """A handler's decision about one message.

    ``commit``: publish ``outputs`` (possibly none), then acknowledge.
    ``retry``: nothing was done; redeliver after ``delay`` seconds.
    ``pause``: a dependency is down; hold the message and stop fetching.
    """

    kind: Literal["commit", "retry", "pause"]
    outcome: Outcome
    outputs: tuple[Output, ...] = ()
    delay: float = 0.0
    reason: str = ""

    @classmethod
    def commit(cls, outputs: tuple[Output, ...], outcome: Outcome) -> Result:
        """Publish ``outputs``, then acknowledge the message."""
        return cls("commit", outcome, outputs)

    @classmethod
    def retry(cls, delay: float, reason: str) -> Result:
        """Ask for redelivery after ``delay`` seconds."""
        return cls("retry", "retried", delay=delay, reason=reason)

    @classmethod
    def pause(cls, delay: float, reason: str) -> Result:
        """Hold the message; try again after ``delay`` seconds."""
        return cls("pause", "paused", delay=delay, reason=reason)


@dataclass(slots=True)
class Message:
    """One delivery on its way through the middleware chain.

    ``tenant`` and ``entity`` come from the subject, so even bytes that are not
    an event can be dead-lettered under the right entity. Middlewares may add
    to ``context`` (the decoded event, a trace span).
    """

    projection: str
    delivery: Delivery
    tenant: str
    entity: str
    max_deliver: int
    context: dict[str, Any] = field(default_factory=dict)
    log: dict[str, Any] = field(default_factory=dict)
    """Fields every log line about this message carries (see :mod:`projections.logctx`)."""
    delivered_here: Callable[[int, int], bool] = lambda _first, _last: False
    """Whether every stream sequence in a range was delivered to this worker."""
    prepared: object = None
    """What the projection's ``prepare`` made of this delivery with the rest of its batch
    (``None``: nothing; the handler then does that work itself)."""

    @property
    def sequence(self) -> int:
        """The stream sequence of the delivered message."""
        return self.delivery.stream_seq

    @property
    def stored_headers(self) -> bytes | dict[str, str]:
        """The message's headers as stored: the raw block, or their parsed view without one.

        A binary-mode event (CloudEvents attributes as ``ce-`` headers) is
        decoded from them, as every reader of the stored message decodes it.
        """
        return stored_headers(self.delivery)

    @property
    def last_delivery(self) -> bool:
        """Whether the consumer will not deliver this message again."""
        return self.delivery.num_delivered >= self.max_deliver


def stored_headers(delivery: Delivery) -> bytes | dict[str, str]:
    """A delivery's headers as stored: the raw block, or their parsed view without one."""
    block = delivery.header_block
    return block if block is not None else delivery.headers


Handler: TypeAlias = Callable[[Message], Awaitable[Result]]
Middleware: TypeAlias = Callable[[Handler], Handler]
Prepare: TypeAlias = "Callable[[Sequence[Delivery]], Sequence[object]]"
"""A projection's work on a whole fetched batch: one result per delivery, in their order
(see :class:`~projections.ProjectionRunner`)."""
