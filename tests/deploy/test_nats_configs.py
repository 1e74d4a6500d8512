"""The NATS server configs in deploy/nats: valid, secret-free, and TLS that really holds."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import nats.errors
import pytest
from nats_sessions import inbox_prefix

from riskpipe.server import NatsServer, find_nats_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nats.aio.client import Client

NATS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nats"
CONFIGS = sorted(NATS_DIR.rglob("*.conf"))
# pasted into auth.conf, not run on its own: started by test_nats_tenants.py
SNIPPETS = {NATS_DIR / "tenants.example.conf"}
_PASSWORD_LINE = re.compile(r"^\s*[{\[]?.*\bpassword\s*[:=]\s*(\S+?)[\s,}]", re.MULTILINE)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``nats-server -t -c path``: parse the config and its includes, load its files."""
    return subprocess.run(
        [str(find_nats_server()), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_configs_are_found() -> None:
    """The single-node, TLS, shared-auth and three cluster configs are all present."""
    names = {str(path.relative_to(NATS_DIR)) for path in CONFIGS}
    assert names >= {
        "accounts.conf",
        "auth.conf",
        "tls.conf",
        "cluster/n1.conf",
        "cluster/n2.conf",
        "cluster/n3.conf",
    }


@pytest.mark.usefixtures("nats_passwords", "nats_tls_env")
@pytest.mark.parametrize(
    "path", sorted(set(CONFIGS) - SNIPPETS), ids=lambda p: str(p.relative_to(NATS_DIR))
)
def test_every_config_passes_the_server_check(path: Path) -> None:
    """``nats-server -t`` accepts every config once its environment variables are set."""
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr


@pytest.mark.usefixtures("nats_passwords")
def test_a_missing_password_variable_stops_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its password variable the server refuses the config rather than run open."""
    monkeypatch.delenv("NATS_PRODUCER_PASSWORD")
    result = check_config(NATS_DIR / "accounts.conf")
    assert result.returncode != 0
    assert "NATS_PRODUCER_PASSWORD" in result.stderr


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(NATS_DIR)))
def test_no_config_holds_a_password_in_clear(path: Path) -> None:
    """Every password in a committed config is an environment variable reference."""
    for value in _PASSWORD_LINE.findall(path.read_text()):
        assert value.startswith("$"), f"{path.name}: password {value!r} is not a $VARIABLE"


async def connect(
    server: NatsServer, user: str, password: str, tls: ssl.SSLContext | None
) -> Client:
    """Connect once, without retries, so that a refusal surfaces as an exception."""
    nc = nats.aio.client.Client()
    try:
        async with asyncio.timeout(5):
            await nc.connect(
                server.url,
                user=user,
                password=password,
                tls=tls,
                allow_reconnect=False,
                connect_timeout=2,
                inbox_prefix=inbox_prefix(user),
                error_cb=_ignore,
            )
    except BaseException:
        await nc.close()  # nats-py leaves the socket of a refused connection open
        raise
    return nc


async def _ignore(_exc: Exception) -> None:
    """Refusals surface from ``connect`` itself; the callback has nothing to add."""


def start_server(data_dir: Path, config: Path) -> Iterator[NatsServer]:
    """Run a server from ``config`` for the length of one fixture."""
    server = NatsServer(data_dir=data_dir, config_file=config)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def mtls_server(
    tmp_path: Path, nats_passwords: object, nats_tls_env: object
) -> Iterator[NatsServer]:
    """A server started from the unmodified ``tls.conf`` (mutual TLS) with the throwaway certs."""
    del nats_passwords, nats_tls_env  # needed for the environment variables they export
    yield from start_server(tmp_path / "nats", NATS_DIR / "tls.conf")


@pytest.fixture
def tls_server(
    tmp_path: Path, nats_passwords: object, nats_tls_env: object
) -> Iterator[NatsServer]:
    """A server from a copy of ``tls.conf`` with ``verify: true`` commented out, as documented."""
    del nats_passwords, nats_tls_env  # needed for the environment variables they export
    copy = tmp_path / "conf"
    shutil.copytree(NATS_DIR, copy)
    tls_conf = copy / "tls.conf"
    text = tls_conf.read_text()
    assert "\n  verify: true\n" in text
    tls_conf.write_text(text.replace("\n  verify: true\n", "\n  # verify: true\n"))
    yield from start_server(tmp_path / "nats", tls_conf)


async def test_tls_config_serves_tls_clients(
    tls_server: NatsServer, nats_passwords: dict[str, str], tls_client: ssl.SSLContext
) -> None:
    """Over TLS the producer's evidence is stored and acknowledged by JetStream."""
    admin = await connect(tls_server, "admin", nats_passwords["admin"], tls_client)
    producer = await connect(tls_server, "producer", nats_passwords["producer"], tls_client)
    try:
        async with asyncio.timeout(5):
            await admin.jetstream().add_stream(name="EVIDENCE", subjects=["rp.evidence.>"])
            ack = await producer.jetstream().publish("rp.evidence.t1.e1", b"{}")
        assert (ack.stream, ack.seq) == ("EVIDENCE", 1)
    finally:
        await producer.close()
        await admin.close()


async def ping(
    server: NatsServer, password: str, tls: ssl.SSLContext | None, user: str = "producer"
) -> bytes:
    """Speak the protocol by hand: read INFO, upgrade to ``tls`` if given, CONNECT and PING.

    Returns the server's first answer: ``PONG`` once connected, anything else (an
    error, or nothing at all because it hung up) otherwise.
    """
    connect_line = json.dumps({"user": user, "pass": password, "verbose": False})
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            info = json.loads((await reader.readline()).removeprefix(b"INFO "))
            assert info["tls_required"] is True
            if tls is not None:
                await writer.start_tls(tls, server_hostname="127.0.0.1")
            writer.write(f"CONNECT {connect_line}\r\nPING\r\n".encode())
            await writer.drain()
            return await reader.readline()
        except (ssl.SSLError, ConnectionError) as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise
            return b""  # the server closed the connection during or after the handshake
        finally:
            writer.close()


async def test_tls_config_refuses_plain_text_clients(
    tls_server: NatsServer, nats_passwords: dict[str, str], tls_client: ssl.SSLContext
) -> None:
    """A client that sends CONNECT in plain text is cut off, whatever its password."""
    assert await ping(tls_server, nats_passwords["producer"], tls_client) == b"PONG\r\n"
    assert await ping(tls_server, nats_passwords["producer"], None) == b""


async def test_tls_clients_must_trust_the_server_ca(
    tls_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """A client that does not trust the server's CA rejects the server's certificate."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await ping(tls_server, nats_passwords["producer"], ssl.create_default_context())


async def test_mutual_tls_requires_a_client_certificate(
    mtls_server: NatsServer,
    nats_passwords: dict[str, str],
    tls_client: ssl.SSLContext,
    mtls_client: ssl.SSLContext,
) -> None:
    """With ``verify: true`` a client needs a certificate from the CA as well as its password."""
    assert await ping(mtls_server, nats_passwords["producer"], mtls_client) == b"PONG\r\n"
    assert await ping(mtls_server, nats_passwords["producer"], tls_client) == b""


# A bcrypt hash (cost 4) of a password that exists only for this test.
_TEST_PASSWORD = "not-a-secret-bcrypt-test"  # noqa: S105 - a fixture, hashed below
_TEST_HASH = "$2b$04$zLJdE44YxwqLWgrsdfDNcOWkXx3wtf9mQ10BAcHnt2LLUlAulIVgm"


@pytest.mark.usefixtures("nats_passwords")
def test_an_unquoted_bcrypt_hash_is_read_as_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash must be quoted inside the variable: its ``$`` would start a variable reference."""
    monkeypatch.setenv("NATS_PRODUCER_PASSWORD", _TEST_HASH)
    assert check_config(NATS_DIR / "accounts.conf").returncode != 0


@pytest.fixture
def bcrypt_server(
    tmp_path: Path, nats_passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[NatsServer]:
    """A server from ``accounts.conf`` whose producer password variable holds a quoted hash."""
    del nats_passwords  # needed for the other users' variables
    monkeypatch.setenv("NATS_PRODUCER_PASSWORD", f'"{_TEST_HASH}"')
    yield from start_server(tmp_path / "nats", NATS_DIR / "accounts.conf")


async def test_a_quoted_bcrypt_hash_authenticates_its_password(bcrypt_server: NatsServer) -> None:
    """With a quoted bcrypt hash in the variable, the password logs in and the hash does not."""
    producer = await connect(bcrypt_server, "producer", _TEST_PASSWORD, None)
    await producer.close()
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(bcrypt_server, "producer", _TEST_HASH, None)
