"""Fixtures for deploy/: passwords in the environment, throwaway TLS, a session per user."""

from __future__ import annotations

import secrets
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nats_sessions import Session, Sessions
from support.tools import require_tool

from eventstore import StoreConfig
from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NATS_USERS = ("admin", "producer", "worker", "auditor", "sys")


@pytest.fixture
def nats_passwords(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh passwords for every NATS user, exported the way the server configs expect."""
    # A letter first: the config parser reads a value such as "1234" as a number.
    passwords = {user: f"pw-{secrets.token_hex(16)}" for user in NATS_USERS}
    for user, password in passwords.items():
        monkeypatch.setenv(f"NATS_{user.upper()}_PASSWORD", password)
    return passwords


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    openssl = require_tool("openssl")
    subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=30)


def _leaf(directory: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> None:
    key, csr, ext = (directory / f"{name}-key.pem", directory / f"{name}.csr", directory / name)
    ext.write_text(f"basicConstraints=critical,CA:FALSE\n{extensions}\n")
    _openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", key, "-out", csr, "-subj", f"/CN={name}"),
    )
    _openssl(
        *("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-days", "1"),
        *("-set_serial", str(secrets.randbits(63)), "-extfile", ext, "-out", f"{ext}.pem"),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates generated with openssl for this test session only."""
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", ca_key, "-out", ca, "-subj", "/CN=riskpipe-test-ca", "-days", "1"),
    )
    _leaf(
        directory, "server", ca, ca_key, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    _leaf(directory, "client", ca, ca_key, "extendedKeyUsage=clientAuth")
    return Pki(
        ca=ca,
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )


@pytest.fixture
def nats_tls_env(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Pki:
    """The throwaway certificates exported as the TLS variables ``tls.conf`` reads."""
    monkeypatch.setenv("NATS_TLS_CERT", str(pki.server_cert))
    monkeypatch.setenv("NATS_TLS_KEY", str(pki.server_key))
    monkeypatch.setenv("NATS_TLS_CA", str(pki.ca))
    return pki


@pytest.fixture
def tls_client(pki: Pki) -> ssl.SSLContext:
    """A client TLS context that trusts the throwaway CA and presents no certificate."""
    return ssl.create_default_context(cafile=str(pki.ca))


@pytest.fixture
def mtls_client(pki: Pki) -> ssl.SSLContext:
    """A client TLS context that trusts the throwaway CA and presents its client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


@pytest.fixture
def secured_server(tmp_path: Path, nats_passwords: dict[str, str]) -> Iterator[NatsServer]:
    """A server started from the unmodified ``deploy/nats/accounts.conf``."""
    del nats_passwords  # needed for the environment variables it exports
    server = NatsServer(data_dir=tmp_path / "nats", config_file=DEPLOY / "nats" / "accounts.conf")
    server.start()
    yield server
    server.kill()


@pytest.fixture
async def sessions(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> AsyncIterator[Sessions]:
    """Connections for the test, closed after it."""
    opened = Sessions(secured_server, nats_passwords)
    yield opened
    await opened.close()


@pytest.fixture
async def admin(sessions: Sessions) -> Session:
    """The admin, after creating every stream and bucket exactly as ``riskpipe init`` does."""
    admin = await sessions.open("admin")
    for config in StoreConfig().stream_configs():
        answer = await admin.api(f"STREAM.CREATE.{config['name']}", config)
        assert "error" not in answer, answer
    return admin


@pytest.fixture
async def producer(admin: Session, sessions: Sessions) -> Session:
    """The producer, connected once the streams exist."""
    del admin
    return await sessions.open("producer")


@pytest.fixture
async def worker(admin: Session, sessions: Sessions) -> Session:
    """The worker, connected once the streams exist."""
    del admin
    return await sessions.open("worker")


@pytest.fixture
async def auditor(admin: Session, sessions: Sessions) -> Session:
    """The auditor, connected once the streams exist."""
    del admin
    return await sessions.open("auditor")
