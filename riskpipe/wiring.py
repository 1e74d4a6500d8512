"""Composition: the event types riskpipe knows, and how the store is built."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from eventstore import ConnectOptions, EventSchemas, EventStore, StoreConfig
from eventstore.errors import StoreUnavailableError
from projections.learning import register_learning_types
from projections.review import REVIEW_STREAM, register_review_types
from projections.risk import build_schemas as _risk_schemas
from projections.shadow import register_shadow_types
from riskpipe import topology

if TYPE_CHECKING:
    from collections.abc import Mapping

    from riskpipe.settings import Settings

__all__ = [
    "CONNECT_FIELDS",
    "build_schemas",
    "connect_options",
    "connect_store",
    "connect_store_when_up",
    "private_settings",
    "store_config",
]

_log = structlog.get_logger(__name__)
_FIRST_WAIT = 0.5
_MAX_WAIT = 10.0


def build_schemas() -> EventSchemas:
    """The registry of every event type riskpipe reads or writes."""
    schemas = _risk_schemas()
    register_review_types(schemas, category=REVIEW_STREAM.category)
    register_learning_types(schemas)
    register_shadow_types(schemas)
    return schemas


def store_config(settings: Settings) -> StoreConfig:
    """The store's names and limits, from settings."""
    return topology.topology_config(
        prefix=settings.subject_prefix,
        replicas=settings.replicas,
        partitions=settings.partitions,
        election_window=settings.election_window,
        max_payload_bytes=settings.max_payload_bytes,
        duplicate_window=settings.duplicate_window,
        lease_ttl=settings.lease_ttl,
    )


def connect_options(settings: Settings) -> ConnectOptions:
    """TLS files and credentials, from settings."""
    return ConnectOptions(
        tls_ca=settings.tls_ca,
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
        tls_hostname=settings.tls_hostname,
        creds=settings.nats_creds,
        nkey_seed=settings.nkey_seed,
        user=settings.nats_user,
        password=settings.nats_password,
        token=settings.nats_token,
        allow_example_secrets=settings.allow_example_secrets,
        inbox_prefix=settings.inbox_prefix,
    )


CONNECT_FIELDS = (  # the settings that say how to connect: TLS files and credentials
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_hostname",
    "nats_creds",
    "nkey_seed",
    "nats_user",
    "nats_password",
    "nats_token",
)


def private_settings(settings: Settings, url: str, **updates: object) -> Settings:
    """``settings`` pointed at a private, unsecured server (demo, benchmarks): no TLS, no login."""
    return settings.model_copy(
        update={**dict.fromkeys(CONNECT_FIELDS, None), "nats_url": url, **updates}
    )


def private_environment(environ: Mapping[str, str], url: str) -> dict[str, str]:
    """``environ`` for a riskpipe child process on a private server: no TLS, no login.

    The same as :func:`private_settings`, for processes that read their settings
    from the environment.
    """
    dropped = {f"RISKPIPE_{name.upper()}" for name in (*CONNECT_FIELDS, "nats_url")}
    kept = {key: value for key, value in environ.items() if key.upper() not in dropped}
    return kept | {"RISKPIPE_NATS_URL": url}


async def connect_store(settings: Settings, *, name: str = "riskpipe") -> EventStore:
    """Connect an event store to ``settings.nats_url``, with its TLS files and credentials.

    Raises:
        CredentialsError: a TLS, creds or seed file is unusable.
        AuthenticationError: the server refused the credentials, or TLS failed.
        StoreUnavailableError: NATS cannot be reached.
    """
    return await EventStore.connect(
        settings.nats_url,
        schemas=build_schemas(),
        config=store_config(settings),
        name=name,
        options=connect_options(settings),
    )


async def connect_store_when_up(
    settings: Settings, stop: asyncio.Event, *, name: str = "riskpipe"
) -> EventStore | None:
    """:func:`connect_store`, waiting with backoff while NATS cannot be reached.

    Each failed attempt is one ``nats.waiting`` log line; the wait doubles up
    to 10 seconds. ``None`` when ``stop`` is set first.

    Raises:
        CredentialsError: a TLS, creds or seed file is unusable.
        AuthenticationError: the server refused the credentials, or TLS failed.
    """
    wait = _FIRST_WAIT
    attempt = 1
    while not stop.is_set():
        try:
            return await connect_store(settings, name=name)
        except StoreUnavailableError as exc:
            _log.warning("nats.waiting", error=str(exc), attempt=attempt, retry_in=wait)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await stop.wait()
        wait = min(2 * wait, _MAX_WAIT)
        attempt += 1
    return None
