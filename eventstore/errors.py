"""The error family of the event store.

Every error raised by :mod:`eventstore` derives from :class:`EventStoreError`.
Callers branch on class, never on message text: :class:`TransientStoreError`
and its subclasses may succeed when retried, everything else is permanent.
"""

from __future__ import annotations

__all__ = [
    "AppendRejectedError",
    "AuthenticationError",
    "BatchLimitError",
    "BatchRejectedError",
    "ConcurrencyConflictError",
    "ConfigDriftError",
    "ConnectionClosedError",
    "ConsumerDriftError",
    "CredentialsError",
    "DecodeError",
    "EventStoreError",
    "InvalidHeaderError",
    "InvalidUTF8Error",
    "InvalidUpcasterError",
    "JetStreamAPIError",
    "MalformedJSONError",
    "MessageTooLargeError",
    "NestingTooDeepError",
    "NotProvisionedError",
    "PartitionsMismatchError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "SchemaViolationError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "TransientStoreError",
    "UnknownCategoryError",
    "UnknownEventTypeError",
]


class EventStoreError(Exception):
    """Root of every error raised by the event store."""


class TransientStoreError(EventStoreError):
    """The operation may succeed if retried (timeouts, no responders, disconnects)."""


class StoreTimeoutError(TransientStoreError, TimeoutError):
    """The server did not answer within the deadline."""


class StoreUnavailableError(TransientStoreError, ConnectionError):
    """No server or stream answered (not connected, no responders)."""


class DecodeError(EventStoreError, ValueError):
    """Bytes that cannot become an event. Permanent: retrying gives the same answer."""


class InvalidUTF8Error(DecodeError):
    """The payload is not valid UTF-8."""


class MalformedJSONError(DecodeError):
    """The payload is not strict JSON (syntax, NaN/Infinity, duplicate keys)."""


class NestingTooDeepError(DecodeError):
    """The JSON nests deeper than any event schema allows."""

    def __init__(self, depth: int, limit: int) -> None:
        self.depth = depth
        self.limit = limit
        super().__init__(f"JSON nests {depth} levels deep, the limit is {limit}")


class PayloadTooLargeError(DecodeError):
    """The payload is over the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"payload is {size} bytes, the limit is {limit}")


class MessageTooLargeError(PayloadTooLargeError):
    """A message (headers and payload) over the server's ``max_payload``; it was not sent.

    The server closes a connection that sends one, so it is refused before it
    is written. Permanent while the server's limit stays what it is.
    """

    def __init__(self, subject: str, size: int, limit: int) -> None:
        self.subject = subject
        self.size = size
        self.limit = limit
        DecodeError.__init__(
            self,
            f"message to {subject} is {size} bytes with its headers,"
            f" over the server's max_payload of {limit}",
        )


class SchemaViolationError(DecodeError):
    """Well-formed JSON that does not match the event's schema."""

    def __init__(self, event_type: str, problems: list[str]) -> None:
        self.event_type = event_type
        self.problems = problems
        super().__init__(f"{event_type}: " + "; ".join(problems))


class UnknownEventTypeError(DecodeError):
    """The envelope's ``type`` is not a registered event type."""

    def __init__(self, event_type: str, known: list[str]) -> None:
        self.event_type = event_type
        self.known = known
        super().__init__(f"unknown event type {event_type!r}; known types: {', '.join(known)}")


class InvalidUpcasterError(EventStoreError, ValueError):
    """An upcaster that cannot be registered, or that returned the wrong data model."""

    def __init__(self, source: str, target: str, reason: str) -> None:
        self.source = source
        self.target = target
        super().__init__(f"upcaster {source} -> {target}: {reason}")


class UnknownCategoryError(EventStoreError):
    """An event's category (its type's, or its subject's) is held by no stream of the store."""

    def __init__(self, category: str, known: list[str]) -> None:
        self.category = category
        self.known = known
        super().__init__(
            f"no stream holds {category!r} events; the store's categories:"
            f" {', '.join(known) or 'none'}"
        )


class ConcurrencyConflictError(EventStoreError):
    """The entity's version was not the one the caller expected."""

    def __init__(self, subject: str, expected: int, actual: int | None) -> None:
        self.subject = subject
        self.expected = expected
        self.actual = actual
        shown = "unknown" if actual is None else str(actual)
        super().__init__(
            f"concurrency conflict on {subject}: expected version {expected}, actual {shown}"
        )


class JetStreamAPIError(EventStoreError):
    """JetStream answered a request with an error that retrying will not change."""

    def __init__(self, what: str, code: int, err_code: int, description: str) -> None:
        self.what = what
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"{what}: {description} (code {code}, err_code {err_code})")


class AppendRejectedError(JetStreamAPIError):
    """The server refused to store a message (e.g. oversized, no such stream)."""


class InvalidHeaderError(EventStoreError, ValueError):
    """A caller-supplied header the store will not send (``Nats-*`` control headers, CR/LF)."""


class BatchLimitError(EventStoreError, ValueError):
    """An atomic batch breaks a rule checked before anything is sent."""


class BatchRejectedError(EventStoreError):
    """The server abandoned an atomic batch: nothing of it was stored."""

    def __init__(self, batch_id: str, code: int, err_code: int, description: str) -> None:
        self.batch_id = batch_id
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(
            f"atomic batch {batch_id} rejected, nothing stored: {description}"
            f" (code {code}, err_code {err_code})"
        )


class ConnectionClosedError(EventStoreError):
    """The connection to NATS is closed for good: the client will not reconnect.

    Permanent for this store: only a new connection (a restarted process) helps.
    """


class NotProvisionedError(EventStoreError):
    """A stream or bucket the store needs does not exist; run ``riskpipe init``."""


class ConfigDriftError(EventStoreError):
    """An existing stream's configuration differs from the one the store expects."""

    def __init__(self, stream: str, differences: dict[str, tuple[object, object]]) -> None:
        self.stream = stream
        self.differences = differences
        shown = ", ".join(
            f"{key}: found {found!r}, expected {want!r}"
            for key, (found, want) in sorted(differences.items())
        )
        super().__init__(f"stream {stream} drifted from its expected config: {shown}")


class PartitionsMismatchError(ConfigDriftError):
    """The evidence stream is not partitioned as asked: made before partitions, or with another P.

    P is fixed when the store is made (``riskpipe init --partitions P``): every
    stored evidence subject carries its partition, so P cannot change in
    place. ``found`` is ``None`` for a stream made before partitions.
    """

    def __init__(self, stream: str, found: int | None, wanted: int) -> None:
        self.found = found
        self.wanted = wanted
        super().__init__(stream, {"partitions": (found, wanted)})
        if found is None:
            message = (
                f"stream {stream} was made before partitions (its evidence is stored without a"
                " partition token): copy its evidence into a new store with `riskpipe migrate"
                " --to <new store's URL>` (docs/operations.md, Repartitioning)"
            )
        else:
            message = (
                f"stream {stream} has {found} partitions, not {wanted}: the number of partitions"
                f" is fixed when the store is made; use --partitions {found} (or"
                f" RISKPIPE_PARTITIONS={found}), or copy the evidence into a new store with"
                f" `riskpipe migrate --to <new store's URL> --partitions {wanted}`"
                " (docs/operations.md, Repartitioning)"
            )
        self.args = (message,)


class ConsumerDriftError(EventStoreError):
    """A durable consumer's config is not what its owner set: someone else changed it.

    Only what decides which messages are delivered, and how, is compared (the
    filter, headers only, ack policy, delivery cap, rate limit): a consumer
    changed there delivers nothing, or only headers, while looking healthy.
    """

    def __init__(
        self, stream: str, consumer: str, differences: dict[str, tuple[object, object]]
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self.differences = differences
        shown = ", ".join(
            f"{key}: found {found!r}, expected {want!r}"
            for key, (found, want) in sorted(differences.items())
        )
        super().__init__(
            f"consumer {consumer} on {stream} was changed by someone else: {shown};"
            " delete it (it is recreated from the checkpoint) and find out who changed it"
        )


class CredentialsError(EventStoreError, ValueError):
    """A TLS, creds or NKey file that cannot be used, or connect options that contradict.

    Raised before anything is sent. The message names the file, never its content.
    """


class AuthenticationError(EventStoreError):
    """The server refused the client's credentials, or TLS failed either way.

    Permanent: connecting again with the same options gets the same answer.
    """


class PermissionDeniedError(EventStoreError):
    """The server refused the connection's user a subject (publish or subscribe).

    NATS reports the subject in lower case, so ``subject`` is as the server sent it.
    """

    def __init__(self, subject: str, operation: str = "publish") -> None:
        self.subject = subject
        self.operation = operation
        if operation == "subscription":
            # the store subscribes to nothing but its reply inboxes
            super().__init__(
                f"permission denied: subscribe to {subject} (replies arrive there: set"
                " --inbox-prefix or RISKPIPE_INBOX_PREFIX to this user's inbox prefix)"
            )
            return
        super().__init__(f"permission denied: {subject}")
