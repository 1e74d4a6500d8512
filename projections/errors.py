"""The error family of the projection runtime.

Every error raised by :mod:`projections` derives from :class:`ProjectionError`.
Whether an error thrown *by a handler* is worth retrying is decided by class
(:func:`is_transient`), never by message text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzers.errors import DependencyUnavailable, TransientAnalyzerError
from eventstore.errors import TransientStoreError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "CheckpointRefusedError",
    "ConfigUnavailableError",
    "EvidenceReplacedError",
    "ForeignMessagesError",
    "HandlerTimeoutError",
    "IdleUnconfirmedError",
    "LeaseConfigError",
    "MisaddressedEventError",
    "NotADeadLetterError",
    "OriginalUnavailableError",
    "ProjectionError",
    "ReplayRefusedError",
    "RetriesExhaustedError",
    "TransientProjectionError",
    "UnexpectedEventTypeError",
    "is_transient",
]


class ProjectionError(Exception):
    """Root of every error raised by the projection runtime."""


class ConfigUnavailableError(ProjectionError):
    """The analyzer config for an evidence position is not known or cannot be loaded.

    The risk projection holds the message (nothing committed, nothing acked)
    and pauses, checking again after ``retry_in`` seconds.
    """

    def __init__(self, reason: str, *, retry_in: float = 5.0) -> None:
        super().__init__(reason)
        self.retry_in = retry_in


class TransientProjectionError(ProjectionError):
    """Handling may succeed if tried again."""


class HandlerTimeoutError(TransientProjectionError, TimeoutError):
    """A handler took longer than its timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"handler did not finish within {seconds}s")


class RetriesExhaustedError(ProjectionError):
    """A transient failure outlived every delivery the consumer allows."""

    def __init__(self, deliveries: int, cause: BaseException) -> None:
        self.deliveries = deliveries
        self.cause = cause
        super().__init__(
            f"still failing after {deliveries} deliveries: {type(cause).__name__}: {cause}"
        )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same message later might succeed.

    An open circuit breaker is not "transient" here: the right reaction is to
    pause consumption, not to spend the message's deliveries.
    """
    if isinstance(exc, DependencyUnavailable):
        return False
    return isinstance(exc, TransientStoreError | TransientAnalyzerError | TransientProjectionError)


class UnexpectedEventTypeError(ProjectionError, ValueError):
    """A valid event of a type this projection does not consume. Permanent."""

    def __init__(self, event_type: str, expected: str) -> None:
        self.event_type = event_type
        self.expected = expected
        super().__init__(f"expected {expected}, got {event_type}")


class NotADeadLetterError(ProjectionError, LookupError):
    """There is no dead letter of this projection at that sequence."""


class OriginalUnavailableError(ProjectionError, LookupError):
    """A dead letter's copy of its original is cut short, and the stored original is not there."""


class ReplayRefusedError(ProjectionError):
    """The dead letter was replayed already, or another replay of it holds the claim."""

    def __init__(
        self, sequence: int, actor: str, at: datetime, replayed_as: int | None = None
    ) -> None:
        self.sequence = sequence
        self.actor = actor
        self.at = at
        self.replayed_as = replayed_as
        when = f"{at:%Y-%m-%dT%H:%M:%SZ} by {actor}"
        what = (
            f"was replayed already, as evidence sequence {replayed_as}, at {when}"
            if replayed_as is not None
            else f"is being replayed by another process (claimed at {when})"
        )
        super().__init__(f"dead letter {sequence} {what}: not replayed again")


class MisaddressedEventError(ProjectionError, ValueError):
    """An event stored on a subject that is not its own. Permanent.

    The store writes an event to the one subject its envelope names (tenant
    and entity); anything else was written around it, on a subject that
    must not decide whose event it is.
    """

    def __init__(self, subject: str, expected: str, published: str | None = None) -> None:
        self.subject = subject
        self.expected = expected
        where = (
            expected if published in (None, expected) else f"{published!r} (stored as {expected!r})"
        )
        super().__init__(
            f"stored on {subject!r}, but its envelope belongs on {where}: not assessed"
        )


class ForeignMessagesError(ProjectionError):
    """An entity's risk subject ends in more foreign messages than a read looks through. Permanent.

    Anyone who may publish on the subject can store a message there that is
    not an assessment (a nats-server trace event, junk); the stream denies
    deletes, so it stays. The entity's state is its last valid assessment,
    and that is looked for only so far back: past that, its evidence is
    dead-lettered rather than scored from a state that may be forgotten.
    """

    def __init__(self, subject: str, looked: int) -> None:
        self.subject = subject
        self.looked = looked
        super().__init__(
            f"no valid assessment among the last {looked} messages on {subject}:"
            " foreign messages cover the entity's state"
        )


class CheckpointRefusedError(ProjectionError, ValueError):
    """A stored checkpoint that a runner must not start from (malformed, moved, stale)."""

    def __init__(self, projection: str, reason: str, detail: str) -> None:
        self.projection = projection
        self.reason = reason
        self.detail = detail
        super().__init__(f"checkpoint of {projection} refused ({reason}): {detail}")


class EvidenceReplacedError(ProjectionError):
    """The evidence stream no longer holds the evidence the recorded assessments answer.

    An assessment names its evidence by stream sequence. When the evidence
    stream is deleted and created again, its sequences start over, so new
    evidence would take the positions of evidence already assessed: the
    projection would take it for evidence it has handled and skip it. The
    projection refuses to run rather than skip evidence.
    """

    def __init__(self, stream: str, sequence: int, expected: str, found: str) -> None:
        self.stream = stream
        self.sequence = sequence
        self.expected = expected
        self.found = found
        super().__init__(
            f"{stream} sequence {sequence} holds {found}, but the latest assessment answers"
            f" {expected} there: was {stream} deleted and created again? New evidence would"
            " reuse assessed positions and be skipped, so the projection does not run."
            f" Restore {stream}, or start the projection over (see docs/projections.md)"
        )


class IdleUnconfirmedError(ProjectionError):
    """A batch run could not confirm that a partition is drained, so it does not say it is.

    The consumer said nothing was pending, but on a replicated stream that is
    its own replica's word, and one still catching up says so while the
    stream's leader holds more. The leader, asked whether anything is left past
    the consumer's ack floor, refused or did not answer within the store's
    election window.
    """

    def __init__(self, consumer: str, stream: str, waited: float, error: str) -> None:
        self.consumer = consumer
        self.stream = stream
        self.waited = waited
        self.error = error
        super().__init__(
            f"cannot tell whether consumer {consumer} has handled everything: it says nothing"
            f" is pending, but {stream}'s leader, which a replica still catching up cannot"
            f" speak for, did not answer ({error}; asked for {waited:.0f} s). Not idle: run"
            f" again once the cluster has elected its leaders (RISKPIPE_ELECTION_WINDOW waits"
            f" longer); a user must be allowed $JS.API.STREAM.MSG.GET.{stream}, as"
            " deploy/nats/auth.conf grants workers"
        )


class LeaseConfigError(ProjectionError):
    """The lease bucket keeps entries for ever, so a crashed worker's leases would never expire."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(
            f"KV bucket {bucket} has no max_age: leases need a TTL so that a crashed worker's"
            " partitions are taken over; re-create the bucket with `riskpipe init`"
        )
