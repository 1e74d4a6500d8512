"""The asynchronous producer client: record evidence with the checks ``riskpipe publish`` makes."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

from eventstore import DEFAULT_INBOX_PREFIX, ConnectOptions, EventStore
from eventstore.errors import DecodeError, EventStoreError, NotProvisionedError
from riskpipe.client._observation import AttributeValue, Observation, Outcome, Recorded, Rejected
from riskpipe.ingest import outcomes_unstorable
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from datetime import datetime
    from types import TracebackType

    from eventstore import CloudEvent

__all__ = ["DEFAULT_URL", "Producer"]

DEFAULT_URL = "nats://127.0.0.1:4222"


class Producer:
    """Records evidence about entities in riskpipe's event store (asynchronous).

    Use it as ``async with await Producer.connect(url) as producer:``. Every
    observation is checked exactly as ``riskpipe publish`` checks a line, and
    stored once however often it is recorded (same ``source`` and ``id``).
    """

    def __init__(self, store: EventStore, exits: contextlib.AsyncExitStack) -> None:
        self._store = store
        self._exits = exits
        self._outcomes_seen = False
        """The ``OUTCOMES`` stream was there once: outcomes are appended without a look."""

    @classmethod
    async def connect(  # noqa: PLR0913 - where, and each way to authenticate, keyword-only
        cls,
        url: str = DEFAULT_URL,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        creds: str | Path | None = None,
        nkey_seed: str | Path | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        tls_hostname: str | None = None,
        inbox_prefix: str = DEFAULT_INBOX_PREFIX,
        subject_prefix: str = "rp",
        max_payload_bytes: int = topology_config().max_payload_bytes,
        timeout: float = 5.0,
        name: str = "riskpipe-producer",
    ) -> Producer:
        """Connect to NATS at ``url`` (comma-separated for a cluster), as ``riskpipe publish`` does.

        ``subject_prefix`` and ``max_payload_bytes`` must match the deployment's
        ``RISKPIPE_SUBJECT_PREFIX`` and ``RISKPIPE_MAX_PAYLOAD_BYTES``;
        ``inbox_prefix`` the inbox subjects its producer user may subscribe to
        (``_INBOX_producer`` with ``deploy/nats/auth.conf``).

        Raises:
            CredentialsError: a TLS, creds or seed file is unusable, or a secret is an example.
            AuthenticationError: the server refused the credentials, or TLS failed.
            StoreUnavailableError: no server answered.
            NotProvisionedError: ``riskpipe init`` has not created the evidence stream.
            PermissionDeniedError: the user may not look the evidence stream up.
        """
        options = ConnectOptions(
            user=user,
            password=password,
            token=token,
            creds=_path(creds),
            nkey_seed=_path(nkey_seed),
            tls_ca=_path(tls_ca),
            tls_cert=_path(tls_cert),
            tls_key=_path(tls_key),
            tls_hostname=tls_hostname,
            inbox_prefix=inbox_prefix,
        )
        config = topology_config(prefix=subject_prefix, max_payload_bytes=max_payload_bytes)
        store = await EventStore.connect(
            url, schemas=build_schemas(), config=config, name=name, timeout=timeout, options=options
        )
        exits = contextlib.AsyncExitStack()
        # inside the store's block, a permission denial ends a call at once
        await exits.enter_async_context(store)
        async with contextlib.AsyncExitStack() as checking:
            checking.push_async_exit(exits)
            await store.stream_state(config.stream_for("evidence"))
            checking.pop_all()
        return cls(store, exits)

    async def record(  # noqa: PLR0913 - the observation's fields, keyword-only after the four that place it
        self,
        tenant: str,
        entity: str,
        pattern: str,
        severity: str,
        *,
        id: str,  # noqa: A002 - the CloudEvents attribute's name
        source: str,
        time: datetime,
        confidence: float | None = None,
        impact: float | None = None,
        attributes: dict[str, AttributeValue] | None = None,
        description: str | None = None,
        observed_at: datetime | None = None,
    ) -> Recorded:
        """Record one observation; return its stream sequence and whether it was a duplicate.

        With an ``impact``, or an attribute that is an object, it is recorded
        as v2 evidence, otherwise as v1 (see :class:`Observation`).

        Raises:
            DecodeError: the observation is invalid (the reason ``publish`` gives a line).
            EventStoreError: the store could not take it (after its own retries).
        """
        observation = Observation(
            tenant=tenant,
            entity=entity,
            pattern=pattern,
            severity=severity,
            id=id,
            source=source,
            time=time,
            confidence=confidence,
            impact=impact,
            attributes=attributes,
            description=description,
            observed_at=observed_at,
        )
        (outcome,) = await self._attempt([observation], _as_is)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def record_outcome(  # noqa: PLR0913 - the outcome's fields, keyword-only after the three that place it
        self,
        tenant: str,
        entity: str,
        outcome: str,
        *,
        positive: bool,
        id: str,  # noqa: A002 - the CloudEvents attribute's name
        source: str,
        time: datetime,
        observed_at: datetime | None = None,
        description: str | None = None,
    ) -> Recorded:
        """Record what really happened to an entity: its sequence, and whether it was there already.

        Raises:
            DecodeError: the outcome is invalid (the reason ``publish`` gives a line).
            EventStoreError: the store could not take it (after its own retries).
        """
        event = Outcome(
            tenant=tenant,
            entity=entity,
            outcome=outcome,
            positive=positive,
            id=id,
            source=source,
            time=time,
            observed_at=observed_at,
            description=description,
        )
        (result,) = await self._attempt([event], _as_is)
        if isinstance(result, Exception):
            raise result
        return result

    async def record_many(
        self, observations: Iterable[Observation | Outcome]
    ) -> list[Recorded | Rejected]:
        """Record many observations (and outcomes), pipelined; one result each, in order.

        An invalid observation, or one the store refused, is a :class:`Rejected`
        in its place; the others are stored.
        """
        return await self._attempt(observations, Rejected.of)

    async def _attempt(
        self,
        observations: Iterable[Observation | Outcome],
        rejected: Callable[[EventStoreError], _R],
    ) -> list[Recorded | _R]:
        """Check each observation as ``publish`` checks a line, and append the valid ones.

        The envelope is checked here, the data and the size as the store encodes
        the event: the checks of a publish line, without a JSON round trip. The
        observations are checked as the store takes them, a chunk at a time, so
        checking the next chunk overlaps with the server storing this one. Each
        failure is in its observation's place, as ``rejected`` makes it of the error.
        """
        items = observations if isinstance(observations, list | tuple) else list(observations)
        unstorable = await self._outcomes_unstorable(items)
        invalid: dict[int, EventStoreError] = {}
        envelope = self._store.schemas.envelope_then_data

        def checked() -> Iterator[CloudEvent]:
            for n, observation in enumerate(items):
                if unstorable is not None and type(observation) is Outcome:
                    invalid[n] = unstorable
                    continue
                try:
                    event = observation.plain_event() or envelope(observation.fields())
                except DecodeError as exc:
                    invalid[n] = exc
                    continue
                yield event

        results: list[Recorded | _R] = [
            rejected(r) if isinstance(r, EventStoreError) else r
            for r in await self._store.append_many(checked(), result=_recorded)
        ]
        for n, exc in invalid.items():  # in order: each goes where its observation was
            results.insert(n, rejected(exc))
        return results

    async def _outcomes_unstorable(
        self, items: list[Observation | Outcome] | tuple[Observation | Outcome, ...]
    ) -> EventStoreError | None:
        """Why outcomes cannot be stored now (no ``OUTCOMES`` stream to see), or ``None``.

        Looked up when a call holds an outcome, until the stream has been seen
        once: without it, each outcome's append would fail only after the
        store's retries, a quarter of a minute each.
        """
        if self._outcomes_seen or not any(type(item) is Outcome for item in items):
            return None
        if (why := await outcomes_unstorable(self._store)) is None:
            self._outcomes_seen = True
        elif isinstance(why, NotProvisionedError):
            return NotProvisionedError(
                f"outcomes cannot be stored: {why} (run riskpipe init: it creates the"
                " OUTCOMES stream)"
            )
        return why

    async def close(self) -> None:
        """Wait for nothing more and close the connection.

        Raises:
            PermissionDeniedError: the server refused the user a subject meanwhile.
        """
        await self._exits.aclose()

    async def __aenter__(self) -> Self:
        """Use the producer in a block that closes it."""
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._exits.__aexit__(kind, exc, tb)


_R = TypeVar("_R")


def _recorded(_stream: str, _subject: str, sequence: int, duplicate: bool) -> Recorded:  # noqa: FBT001 - the store's result callback
    # tuple.__new__ directly: a named tuple's own __new__ is one more Python call
    return _tuple_new(Recorded, (sequence, duplicate))


_tuple_new = tuple.__new__


def _as_is(exc: EventStoreError) -> EventStoreError:
    return exc


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
