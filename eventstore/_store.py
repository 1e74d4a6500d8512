"""The event store: idempotent, optimistically concurrent appends and ordered reads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import random
import time
import uuid
from contextlib import aclosing
from typing import (
    TYPE_CHECKING,
    Any,
    NamedTuple,
    Self,
    TypeVar,
    cast,
    overload,
)

import structlog
from opentelemetry.trace import SpanKind

from eventstore._append import (
    ANY,
    MAX_BATCH,
    MAX_BATCHES_IN_FLIGHT,
    MSG_ID,
    WRONG_LAST_MSG_ID,
    WRONG_LAST_SEQUENCE,
    AckFuture,
    AppendResult,
    Encoded,
    ExpectedVersion,
    caller_headers,
    expected_header,
    expected_number,
    retrying,
    with_msg_id,
)
from eventstore._codec import encode_event
from eventstore._copy import EXPECTED_LAST_SEQUENCE
from eventstore._jetstream._client import JetStreamClient, RawMessage
from eventstore._jetstream._consumer import DurableConsumer
from eventstore._jetstream._publisher import OutboundMessage, PubAck
from eventstore._jetstream._reader import read_batches
from eventstore._jetstream._refusals import refusals_of
from eventstore._jetstream._transport import HeaderBlock
from eventstore._kv import KeyValue
from eventstore._provision import ProvisionReport, provision, recorded_partitions
from eventstore._recorded import RecordedEvent, decode_recorded, to_recorded
from eventstore._telemetry import (
    AppendOutcome,
    StoreMetrics,
    inject_trace,
    span_attributes,
    tracer,
    tracing_enabled,
)
from eventstore._tokens import validate_token
from eventstore.errors import (
    AppendRejectedError,
    BatchLimitError,
    BatchRejectedError,
    ConcurrencyConflictError,
    DecodeError,
    EventStoreError,
    JetStreamAPIError,
    NotProvisionedError,
    PartitionsMismatchError,
    PayloadTooLargeError,
    TransientStoreError,
    UnknownCategoryError,
)

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Sequence,
    )

    from pydantic import BaseModel
    from tenacity import RetryCallState

    from eventstore._copy import Copy
    from eventstore._envelope import CloudEvent
    from eventstore._options import ConnectOptions
    from eventstore._schemas import EventSchemas
    from eventstore._topology import Category, StoreConfig

__all__ = ["EventStore", "PendingAppend"]

_log = structlog.get_logger(__name__)

_CHUNK = 256
"""Events encoded per send in ``append_many``."""
_CHUNKS_AHEAD = 8
"""Chunks ``append_many`` keeps in flight before settling the oldest."""
HEADER_ROOM = 4096
"""Bytes of the server's ``max_payload`` that :meth:`EventStore.payload_limit` leaves to headers."""
_T = TypeVar("_T")
_R = TypeVar("_R")


class _SentChunk(NamedTuple):
    sent: list[tuple[int, Encoded]]
    """(position in the input, the encoded event) of each event sent."""
    futures: list[AckFuture]
    started: float


class PendingAppend:
    """An append started by :meth:`EventStore.append_soon`: its PubAck's future.

    Add a done callback to ``future``; then :meth:`result` says how it went.
    """

    __slots__ = ("_started", "_store", "_subject", "future")

    def __init__(self, store: EventStore, subject: str, future: AckFuture, started: float) -> None:
        self._store = store
        self._subject = subject
        self._started = started
        self.future = future

    def result(self) -> AppendResult | None:
        """Once ``future`` is done: where the event is stored, or ``None`` to :meth:`append` it.

        ``None`` for anything but a PubAck (stored, or a duplicate): a conflict,
        a refusal or a timeout is settled by :meth:`EventStore.append`.
        """
        fut = self.future
        if fut.cancelled() or fut.exception() is not None:
            return None
        ack = fut.result()
        if ack is None:
            return None
        outcome: AppendOutcome = "duplicate" if ack.duplicate else "stored"
        self._store._count(ack.stream, outcome, time.perf_counter() - self._started)  # noqa: SLF001 - its own store
        return AppendResult(ack.stream, self._subject, ack.seq, ack.duplicate)


class EventStore:
    """Append events to JetStream and read them back.

    Build one with :meth:`connect` (it owns the connection) or :meth:`from_client`.
    """

    def __init__(
        self,
        client: JetStreamClient,
        *,
        schemas: EventSchemas,
        config: StoreConfig,
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.client = client
        self.schemas = schemas
        self.config = config
        self.metrics = metrics
        self.retry_attempts = 5
        self._batch_slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        # each category's limit, as its stream's spec scales the configured one
        self._limits = {
            spec.category: self.config.payload_limit(spec.category) for spec in self.config.streams
        }

    @classmethod
    async def connect(  # noqa: PLR0913 - where to connect and what to connect with, keyword-only
        cls,
        url: str,
        *,
        schemas: EventSchemas,
        config: StoreConfig,
        name: str = "riskpipe",
        timeout: float = 5.0,
        metrics: StoreMetrics | None = None,
        options: ConnectOptions | None = None,
    ) -> EventStore:
        """Connect to NATS at ``url`` (comma-separated for a cluster).

        ``options`` gives TLS files and credentials; a user and password, or a
        token, may also be written in the URL (``nats://user:password@host``).

        Raises:
            CredentialsError: a TLS, creds or seed file in ``options`` is unusable.
            AuthenticationError: the server refused the credentials, or TLS failed.
            StoreUnavailableError: no server answered.
        """
        client = await JetStreamClient.connect(url, name=name, timeout=timeout, options=options)
        store = cls(client, schemas=schemas, config=config, metrics=metrics)
        try:
            await store._follow_recorded_partitions()
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def from_client(
        cls,
        nc: object,
        *,
        schemas: EventSchemas,
        config: StoreConfig,
        fast_path: bool = True,
    ) -> EventStore:
        """Use a connected ``nats.aio.client.Client`` the caller owns and will close.

        :meth:`close` leaves the client as it was found. ``fast_path=False``
        uses nats-py's public API only (slower; see docs/eventstore.md).

        Raises:
            TypeError: ``nc`` is not a nats-py client.
        """
        client = await JetStreamClient.from_nats(nc, fast_path=fast_path)
        store = cls(client, schemas=schemas, config=config)
        await store._follow_recorded_partitions()
        return store

    async def close(self) -> None:
        """Drain and close the connection if the store owns it; leave a caller's client as found.

        Never raises because the connection is down or was closed by the server.
        """
        await self.client.close()

    async def __aenter__(self) -> Self:
        """Use the store in a block; a permission denial ends the block.

        On a connection made by :meth:`connect`, the server refusing the user
        any subject cancels the block at once, and leaving it raises
        :class:`~eventstore.errors.PermissionDeniedError` naming the subject,
        instead of the time-out the refused request would meet.
        """
        if (refusals := refusals_of(self.client.nc)) is not None:
            refusals.watch()
        return self

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        refusals = refusals_of(self.client.nc)
        denied = await refusals.settle(exc) if refusals is not None else None
        await self.close()
        if denied is not None:
            raise denied from exc

    @overload
    async def retry_transient(
        self,
        operation: Callable[[], Awaitable[_T]],
        *,
        on_retry: Callable[[TransientStoreError, int], None] | None = None,
        stop: None = None,
    ) -> _T: ...

    @overload
    async def retry_transient(
        self,
        operation: Callable[[], Awaitable[_T]],
        *,
        on_retry: Callable[[TransientStoreError, int], None] | None = None,
        stop: asyncio.Event,
    ) -> _T | None: ...

    async def retry_transient(
        self,
        operation: Callable[[], Awaitable[_T]],
        *,
        on_retry: Callable[[TransientStoreError, int], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> _T | None:
        """``operation()``, called again after each transient failure, for the election window.

        For requests a caller cannot go on without, such as a worker's checks
        at start: retried as an append is (at least ``retry_attempts`` tries and
        for at least ``config.election_window``, with backoff), so a cluster
        electing its leaders delays them instead of failing them.
        ``on_retry(error, attempt)`` is called before each wait. With ``stop``:
        ``None`` as soon as it is set (the attempt under way is cancelled).

        Raises:
            TransientStoreError: still failing once the window has passed.
            EventStoreError: any other failure of ``operation``, at once.
        """
        work = asyncio.ensure_future(self._retried(operation, on_retry))
        if stop is None:
            return await work
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        return None if work.cancelled() else work.result()

    async def _retried(
        self,
        operation: Callable[[], Awaitable[_T]],
        on_retry: Callable[[TransientStoreError, int], None] | None,
    ) -> _T:
        retry = retrying(self.retry_attempts, self.config.election_window.total_seconds())
        if on_retry is not None:

            def before_sleep(state: RetryCallState) -> None:
                failure = state.outcome.exception() if state.outcome is not None else None
                if isinstance(failure, TransientStoreError):
                    on_retry(failure, state.attempt_number)

            retry = retry.copy(before_sleep=before_sleep)
        async for attempt in retry:
            with attempt:
                return await operation()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    # -- provisioning ---------------------------------------------------------

    async def provision(self) -> ProvisionReport:
        """Create missing streams and buckets; report existing ones that drifted.

        A drifted stream is never changed here: changing a production stream is
        an operator's decision. Transient failures (a cluster electing leaders,
        a peer offline that a replica must be placed on) are retried for the
        election window: provisioning is idempotent.

        Raises:
            TransientStoreError: still failing once the election window passed.
        """
        return await self.retry_transient(lambda: provision(self.client, self.config))

    async def _follow_recorded_partitions(self) -> None:
        """Use the partitioned stream's P when it can be read; else keep the configured one.

        Connecting must work before ``riskpipe init`` and for users who may
        not read the stream's config: they keep ``config.partitions``.
        """
        refusals = refusals_of(self.client.nc)
        if refusals is not None:
            refusals.watch()  # a refused inbox is told now, not as a time-out
        partitioned = self.config.partitioned
        if partitioned is None:
            return
        info: dict[str, Any] | None = None
        ended: BaseException | None = None
        try:
            info = await self.client.stream_info(partitioned.name)
        except (asyncio.CancelledError, EventStoreError) as exc:
            ended = exc
        denied = await refusals.settle(ended) if refusals is not None else None
        if denied is not None:
            if denied.operation == "subscription":
                raise denied  # replies cannot arrive: every request would fail the same way
            return  # a user who may not look the stream up
        if isinstance(ended, NotProvisionedError | TransientStoreError):
            return  # not made yet, or not answering yet: the request that needs it will say
        if ended is not None:
            raise ended
        found = None if info is None else recorded_partitions(info["config"])
        if found is not None and found != self.config.partitions:
            self.config = self.config.model_copy(update={"partitions": found})

    async def adopt_partitions(self) -> int:
        """Take P from the partitioned stream (where ``riskpipe init`` recorded it) and return it.

        Readers and workers must use the stream's P, whatever their settings
        say: it decides every stored subject of that stream.

        Raises:
            NotProvisionedError: the partitioned stream does not exist.
            PartitionsMismatchError: the stream was made before partitions.
            ValueError: no stream of the config is partitioned.
        """
        stream = self.config.require_partitioned().name
        info = await self.client.stream_info(stream)
        if info is None:
            raise NotProvisionedError(f"stream {stream} does not exist; run `riskpipe init`")
        found = recorded_partitions(info["config"])
        if found is None:
            raise PartitionsMismatchError(stream, None, self.config.partitions)
        if found != self.config.partitions:
            self.config = self.config.model_copy(update={"partitions": found})
        return found

    # -- appending ------------------------------------------------------------

    def subject_of(self, event: CloudEvent) -> str:
        """The subject an event is stored on, from its type's category.

        Raises:
            UnknownEventTypeError: the type is not registered.
        """
        return self._subject(event, self.schemas.get(event.type).category)

    def _subject(self, event: CloudEvent, category: str) -> str:
        # tenant and subject are tokens: CloudEvent validated them when it was built
        return f"{self.config.prefix}.{category}.{event.tenant}.{event.subject}"

    def _encode(
        self,
        event: CloudEvent,
        headers: dict[str, str],
        subject: str | None = None,
        data: BaseModel | None = None,
    ) -> Encoded:
        # The envelope was validated when the CloudEvent was built; its data is
        # validated and normalised by the type's model here (unless the caller
        # hands over an instance of that model), then written with it.
        spec = self.schemas.get(event.type)
        if data is None:
            data = self.schemas.typed_data(event, spec)
        elif not isinstance(data, spec.data_model):
            raise TypeError(f"{event.type} data must be a {spec.data_model.__name__}")
        payload = encode_event(event, data)
        if subject is None:
            subject = self._subject(event, spec.category)
            limit = self._limit(spec.category)
        else:
            limit = self._payload_limit(subject)
        if len(payload) > limit:
            raise PayloadTooLargeError(len(payload), limit)
        msg_id = event.msg_id
        message = OutboundMessage(subject, payload, {**headers, MSG_ID: msg_id})
        return Encoded(msg_id, message)

    async def append(
        self,
        event: CloudEvent,
        *,
        expected_version: ExpectedVersion = ANY,
        headers: dict[str, str] | None = None,
        subject: str | None = None,
        data: BaseModel | None = None,
    ) -> AppendResult:
        """Append one event, at most once per ``(source, id)``.

        ``subject`` overrides the subject derived from the event's type, tenant
        and entity (dead letters carry the projection's name in theirs).
        ``data`` is the event's data as an instance of its type's model, for a
        caller that built it already (the event's own ``data`` is then ignored):
        it is written as is, without validating it a second time.

        Raises:
            ConcurrencyConflictError: the entity's version is not ``expected_version``.
            DecodeError: the event does not match its schema or is too large.
            InvalidHeaderError: ``headers`` holds a ``Nats-*`` or malformed header.
            AppendRejectedError: the server refused it.
            TransientStoreError: still failing after bounded retries.
        """
        hdrs = {**caller_headers(headers), **expected_header(expected_version)}
        if not tracing_enabled():
            return await self._send(
                self._encoded_or_counted(event, hdrs, subject, data), expected_version
            )
        with tracer.start_as_current_span("send", kind=SpanKind.PRODUCER) as span:
            inject_trace(hdrs)
            encoded = self._encoded_or_counted(event, hdrs, subject, data)
            message = encoded.message
            span.update_name(f"send {message.subject}")
            span.set_attributes(dict(span_attributes(message.subject, "", encoded.msg_id)))
            return await self._send(encoded, expected_version)

    def append_soon(
        self,
        event: CloudEvent,
        *,
        expected_version: ExpectedVersion = ANY,
        headers: dict[str, str] | None = None,
        subject: str | None = None,
        data: BaseModel | None = None,
    ) -> PendingAppend | None:
        """Start :meth:`append` without waiting for the server; ``None`` if it must wait.

        For a caller that has other work to do meanwhile (a projection runner
        moving on to other entities). The returned :class:`PendingAppend`
        settles only the common case, stored or a duplicate; anything else
        (a conflict, a refusal, a timeout) is for :meth:`append` to settle,
        which publishes the event again: the same ``Nats-Msg-Id`` and fence
        make that safe. ``None`` (nothing sent) while tracing is on, the
        window of unacknowledged publishes is full, the client is
        reconnecting, or the event or a header is refused: :meth:`append`
        then waits, or raises the error (counted once, there).
        """
        if tracing_enabled():
            return None
        try:
            hdrs = {**caller_headers(headers), **expected_header(expected_version)}
            encoded = self._encode(event, hdrs, subject, data)
        except (EventStoreError, ValueError):
            return None
        fut = self.client.publisher.publish_nowait(encoded.message)
        if fut is None:
            return None
        return PendingAppend(self, encoded.message.subject, fut, time.perf_counter())

    def _encoded_or_counted(
        self,
        event: CloudEvent,
        headers: dict[str, str],
        subject: str | None,
        data: BaseModel | None,
    ) -> Encoded:
        try:
            return self._encode(event, headers, subject, data)
        except DecodeError:
            self._count(self._stream_of_type(event), "rejected")
            raise

    async def _send(self, encoded: Encoded, expected: ExpectedVersion) -> AppendResult:
        stream = self._stream_of_subject(encoded.message.subject)
        started = time.perf_counter()
        try:
            result = await self._publish_with_retries(encoded, expected)
        except ConcurrencyConflictError:
            self._count(stream, "conflict")
            raise
        except (AppendRejectedError, EventStoreError) as exc:
            if not isinstance(exc, TransientStoreError):
                self._count(stream, "rejected")
            raise
        self._count(
            stream, "duplicate" if result.duplicate else "stored", time.perf_counter() - started
        )
        return result

    async def _publish_with_retries(
        self, encoded: Encoded, expected: ExpectedVersion
    ) -> AppendResult:
        try:  # the first attempt outside tenacity: retries are the exception, not the rule
            fut = await self.client.publisher.publish(encoded.message)
            return await self._settle(encoded, expected, fut)
        except TransientStoreError:
            if self.retry_attempts <= 1:
                raise
        window = self.config.election_window.total_seconds()
        async for attempt in retrying(self.retry_attempts - 1, window):
            with attempt:
                fut = await self.client.publisher.publish(encoded.message)
                return await self._settle(encoded, expected, fut)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _count(self, stream: str, outcome: AppendOutcome, seconds: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.record(stream, outcome, seconds)

    def _stream_of_type(self, event: CloudEvent) -> str:
        try:
            return self.config.stream_for(self.schemas.get(event.type).category)
        except (EventStoreError, ValueError):
            return "unknown"

    async def _settle(
        self, encoded: Encoded, expected: ExpectedVersion, fut: AckFuture
    ) -> AppendResult:
        subject = encoded.message.subject
        try:
            ack = await fut
        except JetStreamAPIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return await self._resolve_conflict(subject, encoded.msg_id, expected)
            raise AppendRejectedError(exc.what, exc.code, exc.err_code, exc.description) from exc
        if ack is None:
            raise EventStoreError(f"publish to {subject}: empty acknowledgement")
        return AppendResult(ack.stream, subject, ack.seq, ack.duplicate)

    async def _resolve_conflict(
        self, subject: str, msg_id: str, expected: ExpectedVersion
    ) -> AppendResult:
        # A retry after a lost ack also fails the sequence check: if the subject's
        # last message is ours, the first attempt was stored.
        stream = self._stream_of_subject(subject)
        last = await self.client.direct_get_last(stream, self.config.stored(subject))
        if last is not None and last.headers.get(MSG_ID) == msg_id:
            return AppendResult(stream, subject, last.seq, duplicate=True)
        actual = last.seq if last is not None else 0
        raise ConcurrencyConflictError(subject, expected_number(expected), actual)

    def payload_limit(self, category: Category) -> int:
        """The largest payload an append to ``category`` can carry on this connection.

        The smaller of the store's own limit for it (``max_payload_bytes``,
        twice that for derived events) and the server's ``max_payload`` less
        :data:`HEADER_ROOM` for the headers: for a producer that must make an
        event fit (a dead letter cuts its copy of the original to this).
        """
        return min(self._limit(category), self.client.max_payload - HEADER_ROOM)

    def _limit(self, category: Category) -> int:
        try:
            return self._limits[category]
        except KeyError:
            raise UnknownCategoryError(category, sorted(self._limits)) from None

    def _payload_limit(self, subject: str) -> int:
        return self._limit(self._category_of_subject(subject))

    def _stream_of_subject(self, subject: str) -> str:
        category = self._category_of_subject(subject)
        self._limit(category)  # a clear error for a category no stream holds
        return self.config.stream_for(category)

    def _category_of_subject(self, subject: str) -> Category:
        return subject.split(".")[len(self.config.prefix.split("."))]

    async def append_unchecked(  # noqa: PLR0913 - where, what, and how to deduplicate it
        self,
        category: Category,
        tenant: str,
        entity: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: dict[str, str] | HeaderBlock | None = None,
    ) -> AppendResult:
        """Store ``payload`` as is, without validating it: for demos, fault tests and re-sends.

        This is how a misbehaving producer that bypasses the store looks to
        consumers; use it to rehearse poison messages, never for real events.

        ``msg_id`` must not begin with a digit: such keys belong to events
        (:func:`~eventstore.msg_id_for`), and a raw message must never be able
        to shadow one.

        Raises:
            ValueError: ``tenant`` or ``entity`` is not a token, or ``msg_id``
                is empty or begins with a digit.
            AppendRejectedError: the server refused it (e.g. over the size limit).
        """
        if not msg_id or msg_id[0].isdigit():
            raise ValueError(
                f"raw message key {msg_id!r} must be non-empty and not begin with a digit"
                " (keys that do are reserved for events)"
            )
        hdrs: dict[str, str]
        if isinstance(headers, HeaderBlock):  # exact lines re-sent: the block is kept whole
            hdrs = with_msg_id(headers, msg_id)
        else:
            hdrs = {**caller_headers(headers), MSG_ID: msg_id}
        message = OutboundMessage(self.config.subject(category, tenant, entity), payload, hdrs)
        fut = await self.client.publisher.publish(message)
        return await self._settle(Encoded(msg_id, message), ANY, fut)

    @overload
    async def append_many(
        self, events: Iterable[CloudEvent], *, headers: dict[str, str] | None = None
    ) -> list[AppendResult | EventStoreError]: ...

    @overload
    async def append_many(
        self,
        events: Iterable[CloudEvent],
        *,
        headers: dict[str, str] | None = None,
        result: Callable[[str, str, int, bool], _R],
    ) -> list[_R | EventStoreError]: ...

    async def append_many(
        self,
        events: Iterable[CloudEvent],
        *,
        headers: dict[str, str] | None = None,
        result: Callable[[str, str, int, bool], _R | AppendResult] = AppendResult,
    ) -> list[Any]:  # the overloads say what of
        """Append many events pipelined; one result (or the error) per event, in order.

        Events that fail validation are reported without being sent; the others
        are all in flight together, bounded by the publisher's window. Events
        whose acknowledgement failed transiently are retried one by one.

        ``result`` makes each stored event's result of its stream, subject,
        sequence and whether it was a duplicate, for a caller that keeps its
        own kind: one object per event instead of two, which the garbage
        collector would otherwise carry through its oldest generation.
        """
        if not tracing_enabled():
            return await self._append_many(events, caller_headers(headers), result)
        with tracer.start_as_current_span("send batch", kind=SpanKind.PRODUCER):
            extra = inject_trace(caller_headers(headers))
            return await self._append_many(events, extra, result)

    async def _append_many(
        self,
        events: Iterable[CloudEvent],
        extra: dict[str, str],
        result: Callable[[str, str, int, bool], _R | AppendResult],
    ) -> list[_R | AppendResult | EventStoreError]:
        # Encode and send a chunk at a time: the server stores one chunk while the
        # next is being encoded. Chunks are settled (results built, messages and
        # futures dropped) once a few newer ones are in flight, so what a call
        # keeps alive is its results, not every message it sent.
        results: list[_R | AppendResult | EventStoreError | None] = []
        in_flight: collections.deque[_SentChunk] = collections.deque()
        pending = iter(events)
        while chunk := list(itertools.islice(pending, _CHUNK)):
            sent: list[tuple[int, Encoded]] = []
            for event in chunk:
                try:
                    sent.append((len(results), self._encode(event, extra)))
                except EventStoreError as exc:
                    self._count(self._stream_of_type(event), "rejected")
                    results.append(exc)
                    continue
                results.append(None)
            del chunk  # the events are encoded: the caller's to keep or to free
            started = time.perf_counter()
            futures = await self.client.publisher.publish_many([e.message for _, e in sent])
            in_flight.append(_SentChunk(sent, futures, started))
            while len(in_flight) > _CHUNKS_AHEAD:
                await self._settle_chunk(in_flight.popleft(), results, result)
        while in_flight:
            await self._settle_chunk(in_flight.popleft(), results, result)
        # every chunk is settled: no placeholder is left
        return cast("list[_R | AppendResult | EventStoreError]", results)

    async def _settle_chunk(
        self,
        chunk: _SentChunk,
        results: list[_R | AppendResult | EventStoreError | None],
        result: Callable[[str, str, int, bool], _R | AppendResult],
    ) -> None:
        """Put the results of a sent chunk in their places in ``results``."""
        for (at, item), fut in zip(chunk.sent, chunk.futures, strict=True):
            try:  # most have their PubAck by now: no await for those
                ack = fut.result() if fut.done() else await fut
            except EventStoreError:
                ack = None
            if ack is None:
                settled = await self._settle_one(item, fut)
                results[at] = (
                    result(settled.stream, settled.subject, settled.sequence, settled.duplicate)
                    if isinstance(settled, AppendResult) and result is not AppendResult
                    else settled
                )
                continue
            if self.metrics is not None:
                outcome: AppendOutcome = "duplicate" if ack.duplicate else "stored"
                self.metrics.record(ack.stream, outcome, time.perf_counter() - chunk.started)
            results[at] = result(ack.stream, item.message.subject, ack.seq, ack.duplicate)

    async def _settle_one(self, encoded: Encoded, fut: AckFuture) -> AppendResult | EventStoreError:
        """The result of an append whose first attempt did not simply succeed."""
        exc = fut.exception()
        try:
            if exc is None or isinstance(exc, TransientStoreError):
                # sent again, one by one, with retries: the same message, whose
                # Msg-Id makes a late first attempt harmless
                return await self._send(encoded, ANY)
            return await self._settle_failed(encoded, fut)
        except EventStoreError as error:
            return error

    async def _settle_failed(self, encoded: Encoded, fut: AckFuture) -> AppendResult:
        stream = self._stream_of_subject(encoded.message.subject)
        try:
            return await self._settle(encoded, ANY, fut)
        except EventStoreError:
            self._count(stream, "rejected")
            raise

    async def append_in_order(
        self, copies: Sequence[Copy], *, after: int
    ) -> list[AppendResult | EventStoreError]:
        """Append stored messages again, in order, each fenced on the one before it.

        The first copy is stored only if its stream then ends at sequence
        ``after``, each later one only if the stream then ends with the copy
        before it (see :mod:`eventstore._copy`): pipelined, yet stored in order
        and unbroken, never after one that failed, never interleaved with
        another writer's messages. For copying a stream into another store.
        One result per copy, in order; from the first that fails, every later
        one fails too, with :class:`ConcurrencyConflictError` (its fence).
        Nothing is retried: the caller reads what the stream holds and goes on.
        """
        results: list[AppendResult | EventStoreError] = []
        window = _CHUNK * _CHUNKS_AHEAD
        for start in range(0, len(copies), window):
            messages = [
                copy.message(after + at, copies[at - 1].msg_id if at else None)
                for at, copy in enumerate(copies[start : start + window], start=start)
            ]
            futures = await self.client.publisher.publish_many(messages)
            for message, fut in zip(messages, futures, strict=True):
                results.append(await self._in_order_result(message, fut))
        return results

    async def _in_order_result(
        self, message: OutboundMessage, fut: AckFuture
    ) -> AppendResult | EventStoreError:
        subject = message.subject
        try:
            ack = await fut
        except JetStreamAPIError as exc:
            if exc.err_code in (WRONG_LAST_SEQUENCE, WRONG_LAST_MSG_ID):
                fence = int(message.headers[EXPECTED_LAST_SEQUENCE])
                return ConcurrencyConflictError(subject, fence, _actual(exc.description))
            return AppendRejectedError(exc.what, exc.code, exc.err_code, exc.description)
        except EventStoreError as exc:
            return exc
        if ack is None:
            return EventStoreError(f"publish to {subject}: empty acknowledgement")
        self._count(ack.stream, "duplicate" if ack.duplicate else "stored")
        return AppendResult(ack.stream, subject, ack.seq, ack.duplicate)

    async def append_batch(
        self,
        events: Sequence[CloudEvent],
        *,
        expected_version: ExpectedVersion = ANY,
        batch_id: str | None = None,
    ) -> list[AppendResult]:
        """Append events atomically: all are stored, or none.

        ``expected_version`` is checked against the first event's entity.

        Raises:
            BatchLimitError: empty, over 1000 events, repeated ids, or mixed streams.
            ConcurrencyConflictError: the first entity's version is not the expected one.
            BatchRejectedError: the server abandoned the batch; nothing was stored.
            DecodeError: an event does not match its schema or is too large.
        """
        encoded = self._check_batch(events)
        bid = batch_id or uuid.uuid4().hex
        async with self._batch_slots:
            ack = await self._send_batch(bid, encoded, expected_version)
        first = ack.seq - len(encoded) + 1
        return [
            AppendResult(ack.stream, e.message.subject, first + i, ack.duplicate)
            for i, e in enumerate(encoded)
        ]

    def _check_batch(self, events: Sequence[CloudEvent]) -> list[Encoded]:
        if not 1 <= len(events) <= MAX_BATCH:
            raise BatchLimitError(
                f"an atomic batch holds 1 to {MAX_BATCH} events, got {len(events)}"
            )
        encoded = [self._encode(event, {}) for event in events]
        if len({e.msg_id for e in encoded}) != len(encoded):
            raise BatchLimitError("an atomic batch cannot hold the same (source, id) twice")
        if len({self._stream_of_subject(e.message.subject) for e in encoded}) != 1:
            raise BatchLimitError("an atomic batch must go to a single stream")
        return encoded

    async def _send_batch(
        self, bid: str, encoded: list[Encoded], expected: ExpectedVersion
    ) -> PubAck:
        publisher, last = self.client.publisher, len(encoded)
        futures = []
        for n, item in enumerate(encoded, start=1):
            hdrs = {**item.message.headers, "Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(n)}
            if n == 1:
                hdrs.update(expected_header(expected))
            if n == last:
                hdrs["Nats-Batch-Commit"] = "1"
            message = OutboundMessage(item.message.subject, item.message.payload, hdrs)
            if n in (1, last):
                futures.append(await publisher.publish(message))
            else:
                await publisher.send(message)
        return await self._batch_outcome(bid, encoded, expected, futures)

    async def _batch_outcome(
        self,
        bid: str,
        encoded: list[Encoded],
        expected: ExpectedVersion,
        futures: list[AckFuture],
    ) -> PubAck:
        results = await asyncio.gather(*futures, return_exceptions=True)
        first_subject = encoded[0].message.subject
        for result in results:
            if isinstance(result, JetStreamAPIError):
                if result.err_code == WRONG_LAST_SEQUENCE:
                    actual = await self._last_seq(first_subject)
                    raise ConcurrencyConflictError(
                        first_subject, expected_number(expected), actual
                    ) from result
                raise BatchRejectedError(
                    bid, result.code, result.err_code, result.description
                ) from result
            if isinstance(result, BaseException):
                raise result
        ack = results[-1]
        if not isinstance(ack, PubAck):
            raise BatchRejectedError(bid, 0, 0, "no acknowledgement for the commit")
        return ack

    async def _last_seq(self, subject: str) -> int:
        stored = self.config.stored(subject)
        last = await self.client.direct_get_last(self._stream_of_subject(subject), stored)
        return last.seq if last is not None else 0

    # -- consuming, buckets, stream administration -----------------------------

    def consumer(self, name: str, *, stream: str | None = None) -> DurableConsumer:
        """A handle on the durable pull consumer ``name`` (default: the config's first stream)."""
        validate_token(name, what="consumer name")
        return DurableConsumer(self.client, stream or self.config.default_stream, name)

    def kv(self, bucket: str) -> KeyValue:
        """A handle on a KV bucket (``config.checkpoint_bucket``, ``config.lease_bucket``)."""
        return KeyValue(self.client, bucket)

    async def stream_state(self, stream: str) -> dict[str, Any]:
        """The stream's state (``messages``, ``first_seq``, ``last_seq``, ...).

        Raises:
            NotProvisionedError: the stream does not exist.
        """
        info = await self.client.stream_info(stream)
        if info is None:
            raise NotProvisionedError(f"stream {stream} does not exist; run `riskpipe init`")
        return dict(info["state"])

    async def count(self, stream: str, subject_filter: str) -> int:
        """How many messages of ``stream`` match ``subject_filter`` (wildcards allowed).

        Raises:
            NotProvisionedError: the stream does not exist.
        """
        return sum((await self.subjects(stream, subject_filter)).values())

    async def subjects(self, stream: str, subject_filter: str) -> dict[str, int]:
        """The subjects of ``stream`` matching ``subject_filter``, and how many messages each holds.

        Read in pages, as the server hands out at most 100,000 subjects per request.

        Raises:
            NotProvisionedError: the stream does not exist.
        """
        found: dict[str, int] = {}
        while True:
            info = await self.client.api(
                f"STREAM.INFO.{stream}", {"subjects_filter": subject_filter, "offset": len(found)}
            )
            before = len(found)
            found.update(
                (subject, int(n)) for subject, n in (info["state"].get("subjects") or {}).items()
            )
            if len(found) == before or len(found) >= int(info.get("total", 0)):
                return found

    async def get(
        self, stream: str, sequence: int, *, next_on_subject: str | None = None
    ) -> RecordedEvent | None:
        """The message at ``sequence`` in ``stream``, or ``None`` when there is none.

        With ``next_on_subject``, the first message on that subject at or after
        ``sequence`` (one request, however far away it is).
        """
        raw = await self.client.direct_get(stream, sequence, next_by_subject=next_on_subject)
        return None if raw is None else self.recorded(raw)

    async def next_sequence(self, stream: str, subject: str, from_seq: int) -> int | None:
        """The sequence of the first message on ``subject`` at or after ``from_seq``, if any.

        One direct-get request; the message itself is not decoded.
        """
        raw = await self.client.direct_get(stream, from_seq, next_by_subject=subject)
        return None if raw is None else raw.seq

    async def delete(self, stream: str, sequence: int) -> None:
        """Delete one message (refused by streams that deny deletes, such as an immutable one).

        Raises:
            JetStreamAPIError: the stream refused.
        """
        await self.client.api(f"STREAM.MSG.DELETE.{stream}", {"seq": sequence, "no_erase": True})

    # -- reading --------------------------------------------------------------

    async def read(
        self,
        tenant: str,
        entity: str,
        *,
        category: Category | None = None,
        from_version: int = 0,
    ) -> AsyncIterator[RecordedEvent]:
        """An entity's events of ``category`` (default: the first stream's) in order.

        Starts at stream sequence ``from_version``.
        """
        if category is None:
            category = self.config.spec_of(self.config.default_stream).category
        subject = self.config.stored_subject(category, tenant, entity)
        stream = self.config.stream_for(category)
        last = await self.client.direct_get_last(stream, subject)
        if last is None:
            return
        reader = self._resumed(stream, subject, max(from_version, 1), last.seq)
        async with aclosing(reader):  # a caller that stops early still frees the consumer
            async for batch in reader:
                for raw in batch:
                    yield self.recorded(raw)

    async def read_all(
        self,
        *,
        stream: str | None = None,
        from_seq: int = 1,
        until_seq: int | None = None,
        filter_subject: str | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event of ``stream`` (default: the first) from ``from_seq`` to ``until_seq``."""
        batches = self.read_batches(
            stream=stream, from_seq=from_seq, until_seq=until_seq, filter_subject=filter_subject
        )
        async with aclosing(batches):  # a caller that stops early still frees the consumer
            async for batch in batches:
                for raw in batch:
                    yield self.recorded(raw)

    async def read_batches(
        self,
        *,
        stream: str | None = None,
        from_seq: int = 1,
        until_seq: int | None = None,
        filter_subject: str | None = None,
    ) -> AsyncGenerator[list[RawMessage], None]:
        """The messages :meth:`read_all` reads, undecoded, in lists of those that have arrived.

        For a reader that decodes only what it needs: decoding every message
        strictly costs several times more than reading it. :meth:`recorded`
        decodes one as :meth:`read_all` does.
        """
        name = stream or self.config.default_stream
        info = await self.client.stream_info(name)
        if info is None:
            return
        last = int(info["state"]["last_seq"])
        end = last if until_seq is None else min(until_seq, last)
        reader = self._resumed(name, filter_subject, from_seq, end)
        async with aclosing(reader):  # a caller that stops early still frees the consumer
            async for batch in reader:
                yield batch

    async def _resumed(
        self, stream: str, filter_subject: str | None, start: int, end: int
    ) -> AsyncGenerator[list[RawMessage], None]:
        """A range read that resumes after its last message when the server fails it.

        A read's consumer is the server's to lose: on a cluster it may have no
        leader yet, or lose it in an election, and a pull is then answered
        503. Such a transient failure ends that consumer; a new one picks up
        after the last message already yielded, retried as an append is (at
        least ``retry_attempts`` tries and for the election window), so a
        reader sees every message of the range once, in order.

        Raises:
            TransientStoreError: still failing once the election window has passed.
        """
        window = self.config.election_window.total_seconds()
        failures, since = 0, 0.0
        while start <= end:
            reader = read_batches(
                self.client, stream, filter_subject=filter_subject, start_seq=start, end_seq=end
            )
            try:
                async with aclosing(reader):
                    async for batch in reader:
                        failures = 0
                        start = batch[-1].seq + 1
                        yield batch
            except TransientStoreError as exc:
                now = time.monotonic()
                since = since if failures else now
                failures += 1
                if failures >= self.retry_attempts and now - since >= window:
                    raise
                _log.warning("store.read_resumed", stream=stream, at=start, error=str(exc),
                             attempt=failures)  # fmt: skip
                jitter = 0.5 + random.random()  # noqa: S311 - spreads retries, not a secret
                await asyncio.sleep(min(2.0, 0.05 * 2**failures) * jitter)
            else:
                return

    async def last(self, subject: str) -> RecordedEvent | None:
        """The latest event stored on ``subject``, or ``None``."""
        raw = await self.last_message(subject)
        return None if raw is None else self.recorded(raw)

    async def last_message(self, subject: str) -> RawMessage | None:
        """The latest message stored on ``subject``, undecoded (see :meth:`decoded`), if any.

        A partitioned stream's publish subject is looked up as stored, with its partition.
        """
        stream = self._stream_of_subject(subject)
        return await self.client.direct_get_last(stream, self.config.stored(subject))

    def recorded(self, raw: RawMessage) -> RecordedEvent:
        """A stored message decoded strictly, as every read returns it."""
        return to_recorded(raw, self.schemas, self.config)

    def decoded(self, raw: RawMessage, *, upcast: bool = True) -> tuple[CloudEvent, BaseModel]:
        """The event and typed data of a stored message :meth:`recorded` accepts, not normalised.

        Read in its type's latest version; without ``upcast``, as it was stored.

        Raises:
            DecodeError: the stored bytes are not a valid event.
        """
        return decode_recorded(raw, self.schemas, self.config, upcast=upcast)


def _actual(description: str) -> int | None:
    """The stream's last sequence, from the server's ``wrong last sequence: N``."""
    number = description.rpartition(":")[2].strip()
    return int(number) if number.isdecimal() else None
