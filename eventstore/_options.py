"""How to connect securely: TLS files and one way to authenticate."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

__all__ = ["DEFAULT_INBOX_PREFIX", "ConnectOptions", "check_inbox_prefix"]

DEFAULT_INBOX_PREFIX = "_INBOX"
"""nats-py's own inbox prefix: replies arrive on ``_INBOX.<id>``."""
_INBOX_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def check_inbox_prefix(value: str) -> str:
    """``value`` if it can start an inbox subject: dot-separated tokens, no wildcard.

    Raises:
        ValueError: it is empty, holds a wildcard, a space or an empty token.
    """
    if not _INBOX_PREFIX.fullmatch(value):
        raise ValueError(
            "the inbox prefix must be subject tokens of letters, digits, '_' and '-'"
            " separated by dots (such as _INBOX_worker), without wildcards"
        )
    return value


class ConnectOptions(BaseModel):
    """TLS and authentication for :meth:`EventStore.connect <eventstore.EventStore.connect>`.

    Every field is optional; the files are checked when connecting, before
    anything is sent, and a file that cannot be used raises
    :class:`~eventstore.errors.CredentialsError` naming it. Give at most one
    way to authenticate: ``creds``, ``nkey_seed``, ``token``, or ``user`` with
    ``password`` (a user and password, or a token, may also be written in the
    URL; these options win over the URL). Secrets are :class:`SecretStr`, so
    they never show in a repr or a log line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tls_ca: Path | None = None
    """PEM bundle of the CA(s) that signed the server's certificate (default: the system's)."""
    tls_cert: Path | None = None
    """PEM client certificate, for servers that require mutual TLS (``verify: true``)."""
    tls_key: Path | None = None
    """The client certificate's unencrypted PEM private key."""
    tls_hostname: str | None = None
    """The name the server's certificate must carry, when it differs from the URL's host."""
    creds: Path | None = None
    """A NATS ``.creds`` file (user JWT and NKey seed), for servers in operator mode."""
    nkey_seed: Path | None = None
    """A file holding a user's NKey seed (``SU...``), for servers that list NKey users."""
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    allow_example_secrets: bool = False
    """Accept a password or token such as ``change-me`` (a throwaway test set-up only)."""
    inbox_prefix: str = DEFAULT_INBOX_PREFIX
    """Where replies (API answers, PubAcks, fetched messages) arrive: ``<prefix>.<id>``.

    A deployment that gives each user its own inbox subjects (so that no user
    can subscribe to another's replies) needs each client to use its user's
    prefix, such as ``_INBOX_worker``.
    """

    @field_validator("inbox_prefix")
    @classmethod
    def _inbox_subject(cls, value: str) -> str:
        return check_inbox_prefix(value)

    @property
    def uses_tls_files(self) -> bool:
        """Whether any TLS file is given (the connection then needs a TLS context)."""
        return any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))
