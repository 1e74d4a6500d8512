"""Settings: the one place environment variables are read (prefix ``RISKPIPE_``)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from analyzers import PatternName
from eventstore import MAX_PARTITIONS, check_inbox_prefix
from projections.readmodel import DatabaseUrlError, normalise_url

__all__ = ["DEFAULT_NATS_URL", "MIN_LEASE_TTL", "Duration", "Settings", "parse_duration"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]
"""An http(s) URL, checked at start-up rather than at the first request."""
# up to the last "@": a password may contain "/" or "@" too
_USERINFO = re.compile(r"^([^:/]*://)?.*@", re.DOTALL)

MIN_LEASE_TTL = timedelta(seconds=1)
"""The shortest lease TTL: the lease bucket's ``max_age`` cannot be shorter."""

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([wdhms]))", re.IGNORECASE)


def parse_duration(value: object) -> object:
    """A duration from friendly text: ``3600`` (seconds), ``90s``, ``15m``, ``2h``, ``7d``.

    Anything else (a ``timedelta``, an ISO 8601 ``PT2H``) is left to pydantic.

    Raises:
        ValueError: text that looks like neither.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text))
    if text[:1] in ("P", "p", "-"):
        return text
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts).lower() != text.replace(" ", "").lower():
        raise ValueError(
            "not a duration: use seconds (3600) or a number with a unit"
            " (90s, 15m, 2h, 7d, 1w, or 1h30m)"
        )
    return timedelta(seconds=sum(float(n) * _UNITS[u.lower()] for n, u in parts))


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A ``timedelta`` that also reads ``3600``, ``2h``, ``7d`` and the like."""


class Settings(BaseSettings):
    """Process-wide settings; CLI flags override them."""

    model_config = SettingsConfigDict(env_prefix="RISKPIPE_", frozen=True, extra="ignore")

    nats_url: str = DEFAULT_NATS_URL
    """NATS server URL(s), comma-separated; may carry ``user:password@`` or a token."""
    # Connecting securely (docs/security.md): TLS files, then one way to authenticate.
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    nats_creds: Path | None = None
    nkey_seed: Path | None = None
    """A file holding the user's NKey seed (the seed itself never goes in a variable)."""
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = None
    allow_example_secrets: bool = False
    """Accept a password or token such as ``change-me``: a throwaway test set-up only."""
    inbox_prefix: str = "_INBOX"
    """Subject prefix replies arrive under; a deployment may give each user its own."""
    data_dir: Path = Path(".riskpipe")
    subject_prefix: str = "rp"
    max_payload_bytes: int = Field(default=64 * 1024, gt=0, le=8 * 1024 * 1024)
    duplicate_window: Duration = Field(default=timedelta(hours=2), ge=timedelta(minutes=1))
    replicas: int = Field(default=1, ge=1, le=5)
    partitions: int = Field(default=16, ge=1, le=MAX_PARTITIONS)
    """P, the number of evidence partitions: used by ``init`` when it makes the store only
    (afterwards every process takes P from the evidence stream)."""
    election_window: Duration = Field(default=timedelta(seconds=15), ge=timedelta(0))
    """How long appends retry a transient failure, such as a stream leader election."""
    lease_ttl: Duration = timedelta(seconds=15)
    """The partition leases' TTL, the ``max_age`` of the lease bucket: used by ``init`` when it
    makes the bucket only (workers take the TTL from the bucket)."""
    projection: str = "risk"
    review: bool = True
    """Whether workers also run the review projection, which opens cases (docs/review.md)."""
    review_projection: str = "review"
    review_policy: Path | None = None
    """A review policy file (TOML or YAML); the defaults of docs/review.md without one."""
    batch: int = Field(default=256, ge=1, le=10_000)
    fetch_timeout: float = Field(default=1.0, gt=0.0, le=60.0)
    max_in_flight: int = Field(default=4096, ge=1, le=100_000)
    ack_wait_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_deliver: int = Field(default=5, ge=1, le=100)
    retry_attempts: int = Field(default=2, ge=1, le=10)
    redelivery_backoff_seconds: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0)
    handler_timeout_seconds: float = Field(default=10.0, gt=0.0, le=600.0)
    drain_timeout_seconds: float = Field(default=20.0, ge=0.0, le=600.0)
    consumer_check_seconds: float = Field(default=10.0, gt=0.0, le=3600.0)
    """How often a running worker checks that nobody changed its consumer."""
    degraded_mode: bool = False
    analyzer_config: Path | None = None
    enrichment_url: _HttpUrl | None = None
    enrichment_timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    enrichment_attempts: int = Field(default=3, ge=1, le=10)
    enrichment_fail_max: int = Field(default=5, ge=1, le=1000)
    enrichment_reset_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    enrichment_patterns: tuple[PatternName, ...] = Field(default=(), max_length=256)
    """Enrich only evidence of these patterns (empty: every pattern's)."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=9464, ge=0, le=65535)
    api_host: str = "127.0.0.1"
    """Where ``riskpipe api`` listens (docs/api.md)."""
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_tokens: Path | None = None
    """The API's tokens file; unset: ``api-tokens.yaml`` in the data directory."""
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1, le=8 * 1024 * 1024)
    """The largest request body the API reads; a larger one is answered 413."""
    api_max_evidence_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    """The largest body ``POST /api/evidence`` reads (docs/api.md); a larger one is 413."""
    console: bool = True
    """Whether ``riskpipe api`` also serves the web console under ``/console`` (docs/console.md)."""
    console_secret: SecretStr | None = None
    """The key that signs console sessions; unset, a random one per process (sessions end
    with it). Give every API process behind one address the same key."""
    console_session_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    """How long a console login lasts."""
    traces_exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: _HttpUrl | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    gc_threshold: int = Field(default=100_000, ge=0, le=10_000_000)
    """Young-generation GC threshold of the riskpipe commands (0: CPython's default)."""
    database_url: str | None = None
    """The SQL read model's database: ``sqlite+aiosqlite:///file`` or
    ``postgresql+asyncpg://user:password@host/db``; unset, a SQLite file in ``data_dir``."""
    readmodel_batch: int = Field(default=500, ge=1, le=10_000)
    """Messages the read model applies per transaction, at most."""
    readmodel_poll_seconds: float = Field(default=0.5, gt=0.0, le=60.0)
    """How long a caught-up ``riskpipe readmodel run`` waits before it looks for new messages."""

    @property
    def api_tokens_file(self) -> Path:
        """The API's tokens file: ``api_tokens``, or ``api-tokens.yaml`` in the data directory."""
        return self.api_tokens or self.data_dir / "api-tokens.yaml"

    @field_validator("nats_url")
    @classmethod
    def _servers(cls, value: str) -> str:
        """Each comma-separated server is a NATS URL, so a typo fails here, not at connect."""
        for server in value.split(","):
            _check_server(server.strip())
        return value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        """A URL of a supported database, so a typo fails at start, not at the first query."""
        if value is None or value == "":
            return None
        try:
            normalise_url(value)
        except DatabaseUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def readmodel_url(self) -> str:
        """``database_url``, or the SQLite file ``<data_dir>/readmodel.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'readmodel.db'}"

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: timedelta) -> timedelta:
        """At least a second: a worker renews every third of it, and stops short of it."""
        if value < MIN_LEASE_TTL:
            raise ValueError(
                "the lease TTL must be at least 1 second (e.g. 15s): workers renew"
                " their leases every third of it"
            )
        return value

    @field_validator("inbox_prefix")
    @classmethod
    def _inbox_subject(cls, value: str) -> str:
        """An inbox prefix a subscription can use, so a typo fails here, not at connect."""
        return check_inbox_prefix(value)

    @field_validator(
        "tls_ca", "tls_cert", "tls_key", "tls_hostname", "nats_creds", "nkey_seed",
        "nats_user", "nats_password", "nats_token", "api_tokens", "console_secret",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty variable (a template's unused slot) is unset, not the current directory."""
        return None if value == "" else value


def _check_server(server: str) -> None:
    """Raise ``ValueError`` unless ``server`` is ``[scheme://][user[:pw]@]host[:port]``.

    The messages show the URL without its user and password, and never quote
    the parser's own message, which may hold a piece of the password.
    """
    shown = repr(_USERINFO.sub(lambda m: f"{m.group(1) or ''}***@", server))
    _check_userinfo(server, shown)
    try:
        parts = urlsplit(server if "://" in server else f"nats://{server}")
    except ValueError:
        raise ValueError(f"{shown} is not a NATS server URL") from None
    if parts.scheme not in _NATS_SCHEMES:
        raise ValueError(f"{shown}: the scheme must be one of nats, tls, ws, wss")
    if not parts.hostname:
        raise ValueError(f"{shown} has no host")
    try:
        parts.port  # noqa: B018 - reading the port is the check
    except ValueError:
        raise ValueError(f"{shown}: the port must be a number from 0 to 65535") from None


def _check_userinfo(server: str, shown: str) -> None:
    """Refuse a user or password that a URL parser would cut at ``/``, ``?`` or ``#``."""
    userinfo = server.partition("://")[2].rpartition("@")[0] if "://" in server else ""
    if any(ch in userinfo for ch in "/?#"):
        raise ValueError(
            f"{shown}: the user or password holds '/', '?' or '#', which end a URL's"
            " user part: percent-encode them (%2F, %3F, %23) or give the password"
            " with --password or RISKPIPE_NATS_PASSWORD"
        )
