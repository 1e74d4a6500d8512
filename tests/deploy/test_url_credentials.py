"""Passwords in URLs (percent-encoded as RFC 3986 writes them) and example secrets refused."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from support.cli import riskpipe

from eventstore import ConnectOptions, EventStore
from eventstore._jetstream._auth import is_example_secret
from eventstore.errors import CredentialsError
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from pathlib import Path

NOWHERE = "nats://127.0.0.1:9"  # the discard port: nothing there speaks NATS
# Every character that means something in a URL's user part, and a random tail.
AWKWARD = "a/b?c#d@e:f%g+h " + os.urandom(6).hex()
ENCODED = "a%2Fb%3Fc%23d%40e%3Af%25g%2Bh%20" + AWKWARD.rpartition(" ")[2]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, after checking it is the only one."""
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def _server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str) -> NatsServer:
    monkeypatch.setenv("TEST_NATS_PASSWORD", password)
    config = tmp_path / "user.conf"
    config.write_text(
        "jetstream: enabled\n"
        "authorization { users: [ { user: admin, password: $TEST_NATS_PASSWORD } ] }\n"
    )
    server = NatsServer(data_dir=tmp_path / "nats", config_file=config)
    server.start()
    return server


@pytest.fixture
def awkward_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServer]:
    """A server whose one user has a password full of URL delimiters."""
    server = _server(tmp_path, monkeypatch, f'"{AWKWARD}"')
    yield server
    server.kill()


def test_a_percent_encoded_password_in_the_url_is_decoded(awkward_server: NatsServer) -> None:
    """``%2F`` in the URL's password is ``/`` to the server, for every command."""
    url = awkward_server.url.replace("nats://", f"nats://admin:{ENCODED}@")
    initialised = riskpipe("--nats-url", url, "init")
    assert initialised.returncode == 0, initialised.stderr
    status = riskpipe("--nats-url", url, "status")
    assert status.returncode == 0, status.stderr
    apart = riskpipe(
        "status",
        env={
            "RISKPIPE_NATS_URL": awkward_server.url,
            "RISKPIPE_NATS_USER": "admin",
            "RISKPIPE_NATS_PASSWORD": AWKWARD,
        },
    )  # given apart, the same password is taken as it is
    assert apart.returncode == 0, apart.stderr


def test_an_unencoded_delimiter_is_one_line_without_the_password(
    awkward_server: NatsServer,
) -> None:
    """A raw ``/``, ``?`` or ``#`` cuts the URL: say how to write it, and never show it."""
    for raw in ("a/b", "a?b", "a#b", AWKWARD):
        url = awkward_server.url.replace("nats://", f"nats://admin:{raw}@")
        line = one_line_error(riskpipe("--nats-url", url, "status"))
        assert "percent-encode" in line
        assert "***@" in line
        assert raw not in line
        assert "b@" not in line  # no piece of the password either


def test_a_wrong_password_says_authentication_failed(awkward_server: NatsServer) -> None:
    """A refused password is one line saying so at once, with the URL's secret hidden."""
    url = awkward_server.url.replace("nats://", "nats://admin:wrong-pw-7@")
    line = one_line_error(riskpipe("--nats-url", url, "status"))
    assert "authentication failed" in line
    assert "wrong-pw-7" not in line


@pytest.mark.parametrize(
    "how",
    [
        ("--nats-url", "nats://admin:change-me@127.0.0.1:9"),
        ("--nats-url", NOWHERE, "--user", "admin", "--password", "Change_Me"),
        ("--nats-url", NOWHERE, "--token", "secret"),
        ("--nats-url", "nats://s3cr3t@127.0.0.1:9"),
    ],
)
def test_an_example_secret_is_refused_before_connecting(how: tuple[str, ...]) -> None:
    """``change-me`` and friends are refused before dialling: nothing listens at the URL."""
    line = one_line_error(riskpipe(*how, "status"))
    assert "well-known example value" in line
    assert "RISKPIPE_ALLOW_EXAMPLE_SECRETS" in line


def test_an_example_secret_is_accepted_when_told_it_is_a_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``RISKPIPE_ALLOW_EXAMPLE_SECRETS=1`` lets a throwaway set-up use ``change-me``."""
    server = _server(tmp_path, monkeypatch, "change-me")
    try:
        url = server.url.replace("nats://", "nats://admin:change-me@")
        refused = one_line_error(riskpipe("--nats-url", url, "init"))
        assert "example value" in refused
        allowed = riskpipe("--nats-url", url, "init", env={"RISKPIPE_ALLOW_EXAMPLE_SECRETS": "1"})
        assert allowed.returncode == 0, allowed.stderr
    finally:
        server.kill()


async def test_the_library_refuses_an_example_secret() -> None:
    """``EventStore.connect`` refuses it too, before dialling; the option lifts the refusal."""
    with pytest.raises(CredentialsError, match="example value"):
        await EventStore.connect(
            NOWHERE,
            schemas=build_schemas(),
            config=topology_config(),
            options=ConnectOptions(user="admin", password="password"),  # noqa: S106 - refused
        )
    with pytest.raises(CredentialsError, match="example value"):
        await EventStore.connect(
            "nats://admin:changeme@127.0.0.1:9", schemas=build_schemas(), config=topology_config()
        )


@pytest.mark.parametrize(
    ("value", "example"),
    [
        ("change-me", True),
        ("CHANGEME", True),
        ("please-change-me-2", True),
        ("replace_me", True),
        ("Passw0rd", True),
        ("", True),
        ("T0pS3cr3t", True),
        ("p" + os.urandom(12).hex(), False),
        ("correct horse battery staple", False),
    ],
)
def test_example_secrets(value: str, *, example: bool) -> None:
    """Placeholders and textbook secrets, ignoring case and punctuation; random ones pass."""
    assert is_example_secret(value) is example
