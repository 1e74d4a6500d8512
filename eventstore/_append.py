"""The vocabulary of appending: expected versions, results, headers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from eventstore._jetstream._inline import parse_headers
from eventstore._jetstream._publisher import OutboundMessage, PubAck
from eventstore._jetstream._transport import HeaderBlock
from eventstore.errors import InvalidHeaderError, TransientStoreError

__all__ = [
    "ANY",
    "EXPECTED_LAST_SUBJECT_SEQ",
    "MAX_BATCH",
    "MAX_BATCHES_IN_FLIGHT",
    "MSG_ID",
    "NO_STREAM",
    "WRONG_LAST_MSG_ID",
    "WRONG_LAST_SEQUENCE",
    "AckFuture",
    "AppendResult",
    "Encoded",
    "ExpectedVersion",
    "caller_headers",
    "expected_header",
    "expected_number",
    "resent_headers",
    "retrying",
    "sendable_headers",
    "with_msg_id",
]

ANY: Final = "any"
NO_STREAM: Final = "no_stream"
ExpectedVersion = int | Literal["any", "no_stream"]

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
MAX_BATCH = 1000
MAX_BATCHES_IN_FLIGHT = 50
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_MSG_ID = 10070


AckFuture = asyncio.Future[PubAck | None]


class Encoded(NamedTuple):
    """An event ready to send: its identity and the message that carries it.

    Not the event itself: a retry sends the same message again, and an
    append of many keeps only this while it waits for the acknowledgements,
    so the events a caller made for the call are freed as soon as they are
    encoded (not promoted to the collector's oldest generation).
    """

    msg_id: str
    message: OutboundMessage


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended event sits. ``version`` is the entity's version after it.

    An entity's version is the stream sequence of its latest event: strictly
    increasing, not contiguous. ``duplicate`` is true when the event had been
    stored before (same ``source`` and ``id``); sequence and version then point
    at the original.
    """

    stream: str
    subject: str
    sequence: int
    duplicate: bool

    @property
    def version(self) -> int:
        """The entity's version after this append."""
        return self.sequence


def expected_header(expected: ExpectedVersion) -> dict[str, str]:
    """The JetStream header for an expected version (none for ``ANY``).

    Raises:
        ValueError: ``expected`` is not ``ANY``, ``NO_STREAM`` or a positive int.
    """
    if expected == ANY:
        return {}
    if expected == NO_STREAM:
        return {EXPECTED_LAST_SUBJECT_SEQ: "0"}
    if isinstance(expected, int) and expected > 0:
        return {EXPECTED_LAST_SUBJECT_SEQ: str(expected)}
    raise ValueError(
        f"expected_version must be 'any', 'no_stream' or a positive int, not {expected!r}"
    )


def expected_number(expected: ExpectedVersion) -> int:
    """The expected version as a number (``NO_STREAM`` is 0)."""
    return 0 if expected == NO_STREAM else int(expected)


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 7230 token: what nats-py accepts as a header name."""


def caller_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Headers a caller may add (trace context and the like), never JetStream control ones.

    Names must be RFC 7230 tokens and values lose surrounding whitespace, as
    in nats-py's ``publish``: the fast path and nats-py's public API then send
    the same bytes.

    Raises:
        InvalidHeaderError: a ``Nats-*`` header, a name that is not a token, a
            control character in a value, or a value that is not valid Unicode.
    """
    if not headers:
        return {}
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if key.lower().startswith("nats-"):
            raise InvalidHeaderError(f"header {key!r} is reserved for the event store")
        if not _HEADER_NAME.fullmatch(key) or any(c in value for c in "\r\n\0"):
            raise InvalidHeaderError(
                f"header {key!r} is not a valid name or holds a control character"
            )
        try:
            value.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: no bytes can carry it
            raise InvalidHeaderError(f"header {key!r} is not valid Unicode") from exc
        checked[key] = value.strip()
    return checked


def sendable_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers of ``headers`` that :func:`caller_headers` accepts; the others are left out.

    For passing on headers that arrived with a message (a dead letter's
    original), some of which the store would refuse to send.
    """
    sendable: dict[str, str] = {}
    for key, value in headers.items():
        with contextlib.suppress(InvalidHeaderError):
            sendable.update(caller_headers({key: value}))
    return sendable


def resent_headers(original: bytes, add: dict[str, str]) -> HeaderBlock:
    """The header lines of the block ``original``, byte for byte and in order, then ``add``.

    For re-sending a message exactly as it arrived: names are not
    normalised, duplicates and spacing stay. Left out are the status line
    (the block starts with a bare ``NATS/1.0``), every ``Nats-*`` line (the
    server acts on those: a message id would make the re-send a duplicate,
    an expected sequence would fence it) and lines naming a header of
    ``add``, which replaces them. The dict view, what nats-py's public API
    sends, holds what :func:`sendable_headers` keeps of them, and ``add``.

    Raises:
        InvalidHeaderError: a header of ``add`` (see :func:`caller_headers`).
    """
    added = caller_headers(add)
    replaced = {name.lower().encode() for name in added}
    lines = original.split(b"\r\n")[1:]
    kept = [
        line
        for line in lines
        if line
        and not (name := line.partition(b":")[0].strip().lower()).startswith(b"nats-")
        and name not in replaced
    ]
    tail = "".join(f"{key}: {value}\r\n" for key, value in added.items()).encode()
    block = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in kept) + tail + b"\r\n"
    return HeaderBlock(block, {**sendable_headers(parse_headers(block)), **added})


def with_msg_id(headers: HeaderBlock, msg_id: str) -> HeaderBlock:
    """``headers`` re-sent (see :func:`resent_headers`) under the message id ``msg_id``."""
    block = resent_headers(headers.block, {}).block
    return HeaderBlock(
        block[:-2] + f"{MSG_ID}: {msg_id}\r\n\r\n".encode(), {**headers, MSG_ID: msg_id}
    )


def retrying(attempts: int, window: float = 0.0) -> AsyncRetrying:
    """Bounded retries of transient failures, exponential backoff with jitter.

    At least ``attempts`` attempts, and retried for at least ``window``
    seconds: long enough for a cluster to elect a stream's new leader.
    """
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientStoreError),
        stop=stop_after_attempt(attempts) & stop_after_delay(window),
        wait=wait_exponential_jitter(multiplier=0.05, max=2.0),
        reraise=True,
    )
