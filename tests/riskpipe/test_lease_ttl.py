"""RISKPIPE_LEASE_TTL: the lease bucket's TTL, set when `riskpipe init` makes it."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import orjson
import pytest
from pydantic import ValidationError
from support.cli import riskpipe

from eventstore import EventStore
from riskpipe.settings import Settings
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas, store_config

if TYPE_CHECKING:
    from riskpipe.server import NatsServer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", timedelta(seconds=3)),
        ("1", timedelta(seconds=1)),
        ("2.5", timedelta(seconds=2.5)),
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("PT20S", timedelta(seconds=20)),
    ],
)
def test_the_lease_ttl_reads_friendly_durations(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta
) -> None:
    """Seconds, a number with a unit, or ISO 8601; the store config carries it."""
    monkeypatch.setenv("RISKPIPE_LEASE_TTL", text)
    settings = Settings()
    assert settings.lease_ttl == expected
    assert store_config(settings).lease_ttl == expected


def test_the_lease_ttl_defaults_to_15_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the store is made with the 15 s TTL the docs describe."""
    monkeypatch.delenv("RISKPIPE_LEASE_TTL", raising=False)
    assert store_config(Settings()).lease_ttl == timedelta(seconds=15)


@pytest.mark.parametrize("text", ["0.5", "0", "0s", "-3", "soon"])
def test_a_lease_ttl_under_a_second_or_not_a_duration_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """A TTL the workers could not renew within, or no duration at all, is refused."""
    monkeypatch.setenv("RISKPIPE_LEASE_TTL", text)
    with pytest.raises(ValidationError, match="lease_ttl"):
        Settings()


def test_the_cli_says_how_short_the_lease_ttl_may_be() -> None:
    """A command started with a too short TTL names the variable, the bound and why."""
    result = riskpipe("status", env={"RISKPIPE_LEASE_TTL": "0.5"})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    error = orjson.loads(line)["error"]
    assert error.startswith("RISKPIPE_LEASE_TTL: the lease TTL must be at least 1 second")
    assert "every third of it" in error


async def _bucket_ttl(url: str) -> timedelta | None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    async with store:
        return await store.kv(store.config.lease_bucket).ttl()


async def test_init_makes_the_lease_bucket_with_the_ttl_and_reports_another_as_drift(
    nats_server: NatsServer,
) -> None:
    """`init` makes rp-leases with RISKPIPE_LEASE_TTL; asked for another TTL later, it is drift."""
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LEASE_TTL": "4s"}
    made = riskpipe("init", env=env)
    assert made.returncode == 0, made.stderr
    assert "created  KV_rp-leases" in made.stdout.splitlines()
    assert await _bucket_ttl(nats_server.url) == timedelta(seconds=4)

    again = riskpipe("init", env=env)
    assert again.returncode == 0, again.stderr
    assert "found    KV_rp-leases" in again.stdout.splitlines()

    other = riskpipe("init", env={**env, "RISKPIPE_LEASE_TTL": "15"})
    assert other.returncode == 1
    drifted = [line for line in other.stderr.splitlines() if "DRIFTED" in line]
    assert len(drifted) == 1, other.stderr
    assert "KV_rp-leases" in drifted[0]
    assert "max_age" in drifted[0]
    assert await _bucket_ttl(nats_server.url) == timedelta(seconds=4), "left unchanged"
