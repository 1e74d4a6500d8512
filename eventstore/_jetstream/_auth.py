"""Connect options as nats-py's ``connect`` arguments, every file checked first.

nats-py reads TLS, creds and seed files lazily, while connecting, and reports
a bad one as a connection failure (or, for a creds file without a JWT block,
loops forever reading it). Here every file is read once, up front, so that a
missing, unreadable or malformed one is a one-line :class:`CredentialsError`
naming the file. Messages never quote a file's content.
"""

from __future__ import annotations

import logging
import ssl
import stat
from typing import TYPE_CHECKING, Any, NoReturn

import nkeys

from eventstore._jetstream._tlsonly import (
    CredentialsKeptError,
    TrackedContext,
    lift_userinfo,
    over_tls_only,
)
from eventstore._options import ConnectOptions
from eventstore.errors import CredentialsError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["connect_kwargs", "connect_plan", "refuse_example_secrets", "refused_reason"]

_EOF_NOISE = "returning true from eof_received() has no effect when using ssl"


class _QuietTlsEof(logging.Filter):
    """Drops asyncio's warning that nats-py's TLS transport triggers whenever a server hangs up.

    nats-py reads a TLS connection through a stream protocol whose
    ``eof_received`` says "keep open", which TLS cannot do; asyncio says so,
    in plain text, once per closed TLS connection. It reports nothing wrong.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _EOF_NOISE


logging.getLogger("asyncio").addFilter(_QuietTlsEof())

_MAX_FILE_BYTES = 16 * 1024 * 1024
_JWT_MARK = b"-----BEGIN NATS USER JWT-----"
_SEED_MARK = b"-----BEGIN USER NKEY SEED-----"


_IDENTITY = frozenset({"user_credentials", "nkeys_seed", "token", "user", "password"})


def connect_plan(url: str, options: ConnectOptions | None) -> tuple[list[str], dict[str, Any]]:
    """The servers to dial and nats-py ``connect`` arguments for ``url`` and ``options``.

    A URL's ``user:password@`` (percent-decoded) is used only when the options
    give no identity of their own. When TLS is asked for (a ``tls://`` URL or
    TLS files), a password or token, given apart or in the URL, goes out only
    over TLS (see ``_tlsonly``).

    Raises:
        CredentialsError: a file is unusable, the options contradict each
            other, or the password or token is a well-known example value.
    """
    servers, lifted = lift_userinfo([server.strip() for server in url.split(",")])
    kwargs = connect_kwargs(options)
    if not _IDENTITY.intersection(kwargs):
        kwargs |= lifted
    if not (options and options.allow_example_secrets):
        refuse_example_secrets(kwargs)
    if "tls" not in kwargs and not any(s.lower().startswith("tls://") for s in servers):
        return servers, kwargs
    context = kwargs.setdefault("tls", tls_context(options or ConnectOptions()))
    for secret in ("password", "token"):
        if isinstance(kwargs.get(secret), str):
            kwargs[secret] = over_tls_only(context, kwargs[secret])
    return servers, kwargs


def connect_kwargs(options: ConnectOptions | None) -> dict[str, Any]:
    """nats-py ``Client.connect`` keyword arguments for ``options``.

    Raises:
        CredentialsError: a file is missing, unreadable or malformed, or the
            options contradict each other.
    """
    if options is None:
        return {}
    kwargs: dict[str, Any] = {}
    _check_one_identity(options)
    if options.uses_tls_files:
        kwargs["tls"] = tls_context(options)
    if options.tls_hostname:
        kwargs["tls_hostname"] = options.tls_hostname
    if options.creds is not None:
        _check_creds(options.creds)
        kwargs["user_credentials"] = str(options.creds)
    if options.nkey_seed is not None:
        _check_seed_file(options.nkey_seed)
        kwargs["nkeys_seed"] = str(options.nkey_seed)
    if options.token is not None:
        kwargs["token"] = options.token.get_secret_value()
    if options.user is not None and options.password is not None:
        kwargs["user"] = options.user
        kwargs["password"] = options.password.get_secret_value()
    return kwargs


def refused_reason(exc: BaseException) -> str | None:
    """Why connecting cannot succeed however often it is tried, or ``None`` if it might.

    An untrusted server certificate, a TLS handshake the server ends (mutual
    TLS without a client certificate) and a refused password or key are final.
    """
    if isinstance(exc, CredentialsKeptError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's TLS certificate is not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = _reason(exc)
        if "certificate required" in reason:
            return "the server requires a TLS client certificate (mutual TLS)"
        return f"TLS failed: {reason}"
    text = str(exc).lower()
    if "authorization" in text or "authentication" in text:
        return "authentication failed: the server refused the credentials (authorization violation)"
    return None


def refuse_example_secrets(kwargs: dict[str, Any]) -> None:
    """Refuse a password or token that is a well-known example (``change-me``, ``secret``...).

    Such a value in a deployment means a template was applied without its
    secrets being filled in; anyone who read the same template can log in.

    Raises:
        CredentialsError: the password or token is an example value.
    """
    for what in ("password", "token"):
        value = kwargs.get(what)
        if isinstance(value, str) and is_example_secret(value):
            raise CredentialsError(
                f"the NATS {what} is a well-known example value, not a secret: set a real one"
                " (or RISKPIPE_ALLOW_EXAMPLE_SECRETS=1 for a throwaway test set-up)"
            )


def is_example_secret(value: str) -> bool:
    """Whether ``value`` is a placeholder or a textbook secret (case and punctuation ignored)."""
    folded = "".join(ch for ch in value.lower() if ch.isalnum())
    return folded in _EXAMPLE_SECRETS or any(mark in folded for mark in _EXAMPLE_MARKS)


# Placeholders from templates (riskpipe's own included) and the NATS
# documentation's examples, folded (lower case, letters and digits only).
_EXAMPLE_SECRETS = frozenset(
    {
        "", "admin", "changeit", "default", "example", "foo", "foobar", "letmein", "nats",
        "pass", "passw0rd", "password", "password1", "pwd", "qwerty", "s3cr3t", "secret",
        "t0ps3cr3t", "test", "token", "xxx", "xxxxxxxx", "123456", "12345678", "123456789",
    }
)  # fmt: skip
_EXAMPLE_MARKS = ("changeme", "replaceme", "yourpassword", "yourtoken", "fillmein", "placeholder")


def _check_one_identity(options: ConnectOptions) -> None:
    if (options.user is None) != (options.password is None):
        missing = "password" if options.password is None else "user"
        raise CredentialsError(f"a NATS user and password go together: the {missing} is missing")
    given = [
        name
        for name, value in (
            ("a creds file", options.creds),
            ("an NKey seed", options.nkey_seed),
            ("a token", options.token),
            ("a user and password", options.user),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise CredentialsError(f"give one way to authenticate to NATS, not {' and '.join(given)}")


def tls_context(options: ConnectOptions) -> TrackedContext:
    """A client TLS context: the CA to trust (default: the system's) and the client certificate.

    Raises:
        CredentialsError: a file is unusable, or a certificate comes without its key.
    """
    if (options.tls_cert is None) != (options.tls_key is None):
        missing = "key" if options.tls_key is None else "certificate"
        raise CredentialsError(
            f"a TLS client certificate and its key go together: the {missing} is missing"
        )
    context = TrackedContext.client()
    if options.tls_ca is None:
        context.load_default_certs()
    else:
        _read(options.tls_ca, "TLS CA")
        try:
            context.load_verify_locations(cafile=str(options.tls_ca))
        except ssl.SSLError as exc:
            raise CredentialsError(
                f"TLS CA file {options.tls_ca}: no usable PEM certificate ({_reason(exc)})"
            ) from exc
    if options.tls_cert is not None and options.tls_key is not None:
        _load_client_cert(context, options.tls_cert, options.tls_key)
    return context


def _load_client_cert(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    if b"-----BEGIN CERTIFICATE-----" not in _read(cert, "TLS certificate"):
        raise CredentialsError(f"TLS certificate file {cert}: not a PEM certificate")
    if b"PRIVATE KEY-----" not in _read(key, "TLS key"):
        raise CredentialsError(f"TLS key file {key}: not a PEM private key")

    def no_password() -> NoReturn:
        # without a callback OpenSSL would prompt on the terminal for a passphrase
        raise CredentialsError(f"TLS key file {key} is encrypted: give an unencrypted key")

    try:
        context.load_cert_chain(str(cert), str(key), password=no_password)
    except ssl.SSLError as exc:
        raise CredentialsError(
            f"TLS certificate {cert} and key {key} cannot be used together ({_reason(exc)})"
        ) from exc


def _check_creds(path: Path) -> None:
    """A creds file holds a user JWT block and a user seed block with a valid seed."""
    lines = _read(path, "NATS creds").splitlines()
    jwt, seed = _after(lines, _JWT_MARK), _after(lines, _SEED_MARK)
    if not jwt:
        raise CredentialsError(f"NATS creds file {path}: no user JWT block")
    if not seed:
        raise CredentialsError(f"NATS creds file {path}: no user NKey seed block")
    _check_seed(seed, f"NATS creds file {path}")


def _check_seed_file(path: Path) -> None:
    _check_seed(_read(path, "NKey seed").strip(), f"NKey seed file {path}")


def _check_seed(seed: bytes, where: str) -> None:
    try:
        key_pair = nkeys.from_seed(bytearray(seed))
    except Exception as exc:  # nkeys raises bare errors of several kinds on bad input
        raise CredentialsError(f"{where}: not a valid NKey seed (a line starting SU)") from exc
    if not key_pair.public_key.startswith(b"U"):
        raise CredentialsError(f"{where}: an NKey seed, but not a user's (SU...)")
    key_pair.wipe()


def _after(lines: list[bytes], mark: bytes) -> bytes:
    """The first non-blank line after ``mark``, or ``b""`` when the block is empty or absent."""
    for index, line in enumerate(lines):
        if mark in line:
            value = next((ln.strip() for ln in lines[index + 1 :] if ln.strip()), b"")
            return b"" if value.startswith(b"---") else value
    return b""


def _read(path: Path, what: str) -> bytes:
    """The file's bytes; it must be a regular file of a sane size (``/dev/zero`` never ends)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise CredentialsError(f"{what} file {path} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"{what} file {path} is not a regular file")
        if info.st_size > _MAX_FILE_BYTES:
            raise CredentialsError(f"{what} file {path} is too large to be one")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CredentialsError(f"{what} file {path} does not exist") from exc
    except PermissionError as exc:
        raise CredentialsError(f"{what} file {path} cannot be read: permission denied") from exc
    except OSError as exc:
        raise CredentialsError(f"{what} file {path} cannot be read: {exc.strerror}") from exc


def _reason(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else str(exc)
