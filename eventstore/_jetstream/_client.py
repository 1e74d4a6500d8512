"""A thin JetStream client: the only place the event store talks to nats-py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import nats.aio.client
import nats.errors
import nats.js.errors
import orjson
import structlog

from eventstore._jetstream._acks import instant
from eventstore._jetstream._auth import connect_plan
from eventstore._jetstream._connecting import FirstConnect, RefusedError, inbox_prefix
from eventstore._jetstream._errors import map_errors
from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._publisher import Publisher
from eventstore._jetstream._refusals import Refusals
from eventstore._jetstream._transport import close_client, select_transport
from eventstore.errors import (
    AuthenticationError,
    EventStoreError,
    JetStreamAPIError,
    NotProvisionedError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from eventstore._options import ConnectOptions

__all__ = ["JetStreamClient", "RawMessage", "redact"]

_log = structlog.get_logger(__name__)
_API = "$JS.API"
_DRAIN_SECONDS = 5
_NOT_FOUND_CODES = frozenset({10059, 10037, 10014})  # stream / message / consumer not found
_UNAVAILABLE = 503
_NO_PEERS = 10005
"""No peer can take a replica: permanent, unless one is only offline (a node restarting)."""
"""JetStream's answer while it cannot serve the request yet (no meta or stream leader)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@dataclass(slots=True)
class RawMessage:
    """A stored message: where it sits, when it was stored, its bytes and headers.

    A value: never changed once made. Not a frozen dataclass only because
    every message read makes one, and a frozen one costs four times as much
    to make. For the same reason the time it was stored is kept as the
    server gives it, in nanoseconds, and made a ``datetime`` only when asked.
    """

    stream: str
    subject: str
    seq: int
    stored_ns: int
    """When it was stored, in nanoseconds since the epoch."""
    data: bytes
    header_block: bytes | None = None
    """Its NATS header block as received (``NATS/1.0`` and the header lines), if any."""
    parsed_headers: dict[str, str] | None = field(default=None, repr=False, compare=False)
    """Its headers once parsed from ``header_block``, or as given without one."""

    @property
    def headers(self) -> dict[str, str]:
        """Its headers, parsed on first use: most readers never look at them."""
        headers = self.parsed_headers
        if headers is None:
            headers = self.parsed_headers = parse_headers(self.header_block)
        return headers

    @property
    def time(self) -> datetime:
        """When it was stored (to the microsecond)."""
        return instant(self.stored_ns)


def _parse_ns(text: str) -> int:
    """Nanoseconds since the epoch of the server's RFC 3339 time (with nanoseconds)."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = (datetime.fromisoformat(head).replace(tzinfo=UTC) - _EPOCH) // _SECOND
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9])


def _ended_without_certificate(
    exc: BaseException, secure: dict[str, Any], options: ConnectOptions | None
) -> bool:
    """Whether ``exc`` cut a TLS connection without a client certificate while it was set up.

    With TLS 1.3 a server that wants a client certificate says so after the
    client's side of the handshake is done; its alert may lose the race with
    the client's first write, which then fails with a broken pipe or a reset.
    """
    return (
        "tls" in secure
        and (options is None or options.tls_cert is None)
        and isinstance(exc, BrokenPipeError | ConnectionResetError)
    )


def _raw_from_direct(stream: str, msg: Msg) -> RawMessage | None:
    headers = dict(msg.headers or {})
    status = headers.get("Status")
    if status == "404":
        return None
    if status == str(_UNAVAILABLE):
        raise StoreUnavailableError(
            f"direct get on {stream}: JetStream unavailable ({headers.get('Description', '')})"
        )
    if status is not None:
        raise JetStreamAPIError(
            f"direct get on {stream}", int(status), 0, headers.get("Description", "")
        )
    return RawMessage(
        stream=stream,
        subject=headers.pop("Nats-Subject"),
        seq=int(headers.pop("Nats-Sequence")),
        stored_ns=_parse_ns(headers.pop("Nats-Time-Stamp")),
        data=msg.data,
        parsed_headers={
            k: v
            for k, v in headers.items()
            if k not in ("Nats-Stream", "Nats-Last-Sequence", "Nats-Num-Pending")
        },
    )


class JetStreamClient:
    """Connection, JetStream API requests, pipelined publishing and direct reads."""

    def __init__(
        self, nc: Client, *, timeout: float = 5.0, owned: bool = True, fast_path: bool = True
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.transport = select_transport(nc, fast_path=fast_path)
        """Frames out, inline subscriptions in: the fast path, or nats-py's public API."""
        self.publisher = Publisher(self.transport, timeout=timeout)
        self._owned = owned

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        options: ConnectOptions | None = None,
    ) -> JetStreamClient:
        """Connect to ``url``, reconnecting forever once connected.

        Raises:
            CredentialsError: a TLS, creds or seed file in ``options`` is unusable.
            AuthenticationError: the server refused the credentials, or TLS failed.
            StoreUnavailableError: no server answered within ``connect_timeout``.
        """
        servers, secure = connect_plan(url, options)  # files checked before anything is sent
        nc = nats.aio.client.Client()
        refusals = Refusals.attach(nc)
        first = FirstConnect(nc)
        try:
            async with asyncio.timeout(connect_timeout):
                await nc.connect(
                    servers=servers,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    drain_timeout=_DRAIN_SECONDS,
                    connect_timeout=max(1, min(2, int(connect_timeout))),
                    error_cb=refusals.callback(first.or_then(_error_log(nc))),
                    disconnected_cb=_connection_log(nc, redact(url), "nats.disconnected"),
                    reconnected_cb=_connection_log(nc, redact(url), "nats.reconnected"),
                    inbox_prefix=inbox_prefix(options),
                    **secure,
                )
        except RefusedError as exc:
            await first.abandon()
            raise AuthenticationError(f"cannot connect to NATS at {redact(url)}: {exc}") from exc
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await first.abandon()
            why = str(exc) or str(nc.last_error or "") or "no answer in time"
            if _ended_without_certificate(nc.last_error or exc, secure, options):
                why += (
                    " (the server ended the TLS connection: does it require a TLS client"
                    " certificate? give --tls-cert and --tls-key)"
                )
            raise StoreUnavailableError(f"cannot connect to NATS at {redact(url)}: {why}") from exc
        first.done = True
        client = cls(nc, timeout=timeout)
        await client.publisher.start()
        return client

    @classmethod
    async def from_nats(
        cls, nc: object, *, timeout: float = 5.0, fast_path: bool = True
    ) -> JetStreamClient:
        """Wrap a connection the caller owns (it is not closed by :meth:`close`).

        :meth:`close` leaves it as it was found: the fast path's hook into its
        message processing is taken out again.

        Raises:
            TypeError: ``nc`` is not a nats-py client.
        """
        if not isinstance(nc, nats.aio.client.Client):
            raise TypeError(f"expected a nats.aio.client.Client, got {type(nc).__name__}")
        client = cls(nc, timeout=timeout, owned=False, fast_path=fast_path)
        try:
            await client.publisher.start()
        except BaseException:
            client.transport.close()
            raise
        return client

    @property
    def connected(self) -> bool:
        """Whether the connection is currently up."""
        return bool(self.nc.is_connected)

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload``: no message (headers and payload) may be larger."""
        return int(self.nc.max_payload)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed for good: nats-py will not reconnect it."""
        return bool(self.nc.is_closed)

    @property
    def closed_reason(self) -> str:
        """Why the connection closed, as far as the client knows (its last error)."""
        err = self.nc.last_error
        return redact(str(err) or type(err).__name__) if err is not None else "closed"

    async def close(self) -> None:
        """Stop publishing, undo the fast path's hook, drain the connection if owned.

        Never raises because the connection is down or already closed (by the
        server, or by a fatal protocol error): there is nothing left to drain then.
        """
        try:
            with contextlib.suppress(EventStoreError):  # the connection is going away anyway
                await self.publisher.stop()
        finally:
            self.transport.close()
        if not self._owned or self.nc.is_closed:
            return
        drained = False
        if self.nc.is_connected:
            try:
                async with asyncio.timeout(2 * _DRAIN_SECONDS):
                    await self.nc.drain()
                drained = True
            # TypeError: what Python 3.12+ raises writing to a socket that was lost
            # before the client noticed (killed between two turns of the loop)
            except (TimeoutError, OSError, TypeError, nats.errors.Error) as exc:
                _log.warning("nats.drain_failed", error=str(exc) or type(exc).__name__)
        if not self.nc.is_closed:
            # nothing to drain over a connection that is down or failed to drain;
            # closing it may find the socket already gone, which is what closing
            # wants anyway (TypeError: as above, should a client keep its buffer
            # somewhere close_client does not know of)
            with contextlib.suppress(OSError, TypeError, nats.errors.Error):
                await close_client(self.nc, lost=not drained)

    async def api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a JetStream API request under ``$JS.API`` and return its JSON answer.

        Raises:
            NotProvisionedError: the stream, consumer or message does not exist.
            JetStreamAPIError: JetStream answered with another error.
            TransientStoreError: timeout, no responders, or JetStream answered
                503 (temporarily unavailable: a cluster electing its leaders), or
                could not place a replica because a peer is offline.
        """
        body = orjson.dumps(payload) if payload is not None else b""
        with map_errors(subject):
            msg = await self.nc.request(f"{_API}.{subject}", body, timeout=self.timeout)
        resp: dict[str, Any] = orjson.loads(msg.data)
        if err := resp.get("error"):
            code, err_code = int(err.get("code", 0)), int(err.get("err_code", 0))
            if err_code in _NOT_FOUND_CODES:
                raise NotProvisionedError(f"{subject}: {err.get('description')}")
            if code == _UNAVAILABLE or (
                err_code == _NO_PEERS and "offline" in str(err.get("description", ""))
            ):
                raise StoreUnavailableError(
                    f"{subject}: JetStream unavailable ({err.get('description')},"
                    f" err_code {err_code})"
                )
            raise JetStreamAPIError(subject, code, err_code, str(err.get("description", "")))
        return resp

    async def stream_info(self, stream: str) -> dict[str, Any] | None:
        """The stream's info (config and state), or ``None`` when it does not exist."""
        try:
            return await self.api(f"STREAM.INFO.{stream}")
        except NotProvisionedError:
            return None

    async def direct_get_last(self, stream: str, subject: str) -> RawMessage | None:
        """The last message stored on ``subject``, or ``None`` (needs ``allow_direct``)."""
        with map_errors(f"direct get on {stream}"):
            msg = await self.nc.request(
                f"{_API}.DIRECT.GET.{stream}.{subject}", b"", timeout=self.timeout
            )
        return _raw_from_direct(stream, msg)

    async def leader_next_sequence(self, stream: str, seq: int, subject: str) -> int | None:
        """The first message on ``subject`` at or after ``seq``, as the stream leader has it.

        Unlike a direct get, which any replica answers (one still catching up
        answers "none" for what it has not received yet), this asks the
        stream's leader. ``None``: there is none.
        """
        try:
            answer = await self.api(
                f"STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject}
            )
        except NotProvisionedError:  # no message there (or no stream)
            return None
        return int(answer["message"]["seq"])

    async def leader_last_sequence(self, stream: str, subject: str) -> int | None:
        """The sequence of the last message on ``subject``, as the stream leader has it.

        Like :meth:`leader_next_sequence`, the leader answers, never a replica
        that may still be catching up. ``None``: there is none (or no stream).
        """
        try:
            answer = await self.api(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        except NotProvisionedError:
            return None
        return int(answer["message"]["seq"])

    async def leader_get(
        self, stream: str, seq: int, *, next_by_subject: str | None = None
    ) -> RawMessage | None:
        """The message at ``seq`` (or the first on ``next_by_subject`` from it), from the leader.

        Slower than :meth:`direct_get`, but never behind: for small streams a
        reader must see whole, e.g. the config log a worker follows.
        ``None``: there is none.
        """
        request: dict[str, object] = {"seq": seq}
        if next_by_subject is not None:
            request["next_by_subj"] = next_by_subject
        return await self._leader_message(stream, request)

    async def leader_get_last(self, stream: str, subject: str) -> RawMessage | None:
        """The last message on ``subject``, from the leader (``None``: there is none).

        What :meth:`direct_get_last` answers, never from a replica still catching up.
        """
        return await self._leader_message(stream, {"last_by_subj": subject})

    async def _leader_message(self, stream: str, request: dict[str, object]) -> RawMessage | None:
        try:
            answer = await self.api(f"STREAM.MSG.GET.{stream}", request)
        except NotProvisionedError:
            return None
        message = answer["message"]
        hdrs = message.get("hdrs")
        return RawMessage(
            stream=stream,
            subject=str(message["subject"]),
            seq=int(message["seq"]),
            stored_ns=_parse_ns(str(message["time"])),
            data=base64.b64decode(message.get("data") or ""),
            header_block=base64.b64decode(hdrs) if hdrs else None,
        )

    async def direct_get(
        self, stream: str, seq: int, *, next_by_subject: str | None = None
    ) -> RawMessage | None:
        """The message at ``seq``, or ``None`` when there is none (deleted or out of range).

        With ``next_by_subject``: the first message on that subject at or after ``seq``.
        """
        request: dict[str, object] = {"seq": seq}
        if next_by_subject is not None:
            request["next_by_subj"] = next_by_subject
        body = orjson.dumps(request)
        with map_errors(f"direct get on {stream}"):
            msg = await self.nc.request(f"{_API}.DIRECT.GET.{stream}", body, timeout=self.timeout)
        return _raw_from_direct(stream, msg)


def _error_log(nc: Client) -> Callable[[Exception], Awaitable[None]]:
    """A callback logging client errors once connected (connect failures are raised instead)."""

    async def log(exc: Exception) -> None:
        if nc.is_connected or nc.is_reconnecting:
            _log.warning("nats.error", error=str(exc), error_type=type(exc).__name__)

    return log


def redact(url: str) -> str:
    """``url`` (comma-separated servers) with any user name, password or token hidden."""
    return ",".join(_redact_one(part.strip()) for part in url.split(","))


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at or not userinfo:
        return url
    return f"{scheme}{sep}***@{host}"


def _connection_log(nc: Client, url: str, event: str) -> Callable[[], Awaitable[None]]:
    """A callback logging a connection change, except those a deliberate close causes."""

    async def log() -> None:
        if not (nc.is_closed or nc.is_draining):
            _log.warning(event, url=url)

    return log
