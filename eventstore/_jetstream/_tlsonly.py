"""A password or token goes out only over TLS, when TLS was asked for.

nats-py upgrades a connection to TLS only when the server's first message says
TLS is required, whatever the URL's scheme: a server that does not require it
(misconfigured, or a man in the middle that rewrote that message) gets the
client's ``CONNECT``, password included, in plain text. When the caller asked
for TLS (a ``tls://`` URL or TLS files), the password or token is therefore
handed to nats-py as a callable that nats-py calls while writing ``CONNECT``,
and that refuses unless a TLS session completed since it last answered. The
context remembers the sessions it starts; a URL's ``user:password@`` is lifted
into such a callable too.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import nats.errors

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CredentialsKeptError",
    "PlainTextRefusedError",
    "TlsEndedError",
    "TrackedContext",
    "lift_userinfo",
    "over_tls_only",
]


class CredentialsKeptError(nats.errors.Error):
    """The credentials were kept back: no TLS session to send them over."""


class PlainTextRefusedError(CredentialsKeptError):
    """The server did not start TLS."""

    def __str__(self) -> str:
        return "the server does not require TLS: credentials not sent in plain text"


class TlsEndedError(CredentialsKeptError):
    """The TLS session ended before the credentials went out.

    With TLS 1.3 a server that wants a client certificate says so only after
    the client's side of the handshake is done: this is how a missing one shows.
    """

    def __str__(self) -> str:
        return (
            "the server ended the TLS session before the credentials were sent"
            " (does it require a TLS client certificate?)"
        )


class TrackedContext(ssl.SSLContext):
    """A client TLS context that remembers the last TLS session it started."""

    latest: ssl.SSLObject | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,  # noqa: FBT001, FBT002 - same
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Start a TLS session (asyncio's ``start_tls`` calls this) and remember it."""
        session_object = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self.latest = session_object
        return session_object

    @classmethod
    def client(cls) -> TrackedContext:
        """What ``ssl.create_default_context()`` makes, as a tracked context, with no CA yet."""
        context = cls(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
        context.verify_flags = ssl.create_default_context().verify_flags  # 3.13's strict flags
        return context


def over_tls_only(context: TrackedContext, secret: str) -> Callable[[], str]:
    """``secret`` for nats-py's ``CONNECT``, only over a TLS session not used before.

    Raises (when called):
        PlainTextRefusedError: no TLS session was started since the last call.
        TlsEndedError: the latest session did not complete, or has ended.
    """
    sent_over: list[ssl.SSLObject] = []

    def give() -> str:
        session = context.latest
        if session is None or session in sent_over:
            raise PlainTextRefusedError
        if session.version() is None:  # never completed, or ended since
            raise TlsEndedError
        sent_over[:] = [session]
        return secret

    return give


def lift_userinfo(servers: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The servers without ``user:password@``, and that user and password (or token) apart.

    The user, password and token are percent-decoded, as RFC 3986 writes them.
    Unchanged when no server carries one, or when servers carry different ones.
    """
    found = {server.partition("://")[2].rpartition("@")[0] for server in servers if "://" in server}
    found.discard("")
    if len(found) != 1:
        return servers, {}
    userinfo = found.pop()
    stripped = [
        f"{scheme}://{rest.rpartition('@')[2]}" if sep else server
        for server in servers
        for scheme, sep, rest in [server.partition("://")]
    ]
    user, colon, password = userinfo.partition(":")
    # RFC 3986 userinfo is percent-encoded: ``p%40ss`` is the password ``p@ss``
    user, password = unquote(user), unquote(password)
    return stripped, ({"user": user, "password": password} if colon else {"token": user})
