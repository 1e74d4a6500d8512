"""Fixtures for deploy/: passwords in the environment, throwaway TLS, a session per user."""

from __future__ import annotations

import re
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nats_sessions import Session, Sessions
from support.tools import require_tool

from riskpipe.server import NatsServer
from riskpipe.topology import topology_config

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


# Python 3.13 verifies with VERIFY_X509_STRICT: a CA needs critical basicConstraints and
# keyUsage, a leaf needs keyUsage, an authority key identifier and its names as SANs.
_CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE",
    "keyUsage=critical,keyCertSign,cRLSign",
    "subjectKeyIdentifier=hash",
)
_LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE",
    "keyUsage=critical,digitalSignature",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid,issuer",
    "subjectAltName=IP:127.0.0.1,DNS:localhost",
)


def _leaf(directory: Path, name: str, ca: Path, ca_key: Path, usage: str) -> None:
    """A certificate for ``name`` signed by the CA, for ``usage`` (serverAuth or clientAuth)."""
    key, csr, ext = (directory / f"{name}-key.pem", directory / f"{name}.csr", directory / name)
    ext.write_text("\n".join((*_LEAF_EXTENSIONS, f"extendedKeyUsage={usage}")) + "\n")
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
        *(arg for extension in _CA_EXTENSIONS for arg in ("-addext", extension)),
    )
    _leaf(directory, "server", ca, ca_key, "serverAuth")
    _leaf(directory, "client", ca, ca_key, "clientAuth")
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


TENANTS = ("acme", "globex")


def with_tenant_producers(auth: str, example: str) -> str:
    """``auth.conf`` set up as ``tenants.example.conf`` says: pasted in, and its users added."""
    users = re.findall(r"^#\s+(\{ user: producer-.*\})$", example, re.MULTILINE)
    assert len(users) == len(TENANTS), users
    auditor = next(line for line in auth.splitlines() if line.strip().startswith("{ user: auditor"))
    indent = auditor[: len(auditor) - len(auditor.lstrip())]
    auth = auth.replace(auditor, "\n".join([auditor, *(indent + user for user in users)]), 1)
    return auth.replace("\naccounts {", f"\n{example}\naccounts {{", 1)


@pytest.fixture
def tenant_passwords(
    nats_passwords: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Every user's password, the per-tenant producers' included, exported for the server."""
    passwords = dict(nats_passwords)
    for tenant in TENANTS:
        passwords[f"producer-{tenant}"] = password = f"pw-{secrets.token_hex(16)}"
        monkeypatch.setenv(f"NATS_PRODUCER_{tenant.upper()}_PASSWORD", password)
    return passwords


@pytest.fixture
def tenant_server(tmp_path: Path, tenant_passwords: dict[str, str]) -> Iterator[NatsServer]:
    """``accounts.conf`` with the per-tenant producers of ``tenants.example.conf`` added."""
    del tenant_passwords  # needed for the environment variables it exports
    copy = tmp_path / "conf"
    shutil.copytree(DEPLOY / "nats", copy)
    auth = copy / "auth.conf"
    example = (DEPLOY / "nats" / "tenants.example.conf").read_text()
    auth.write_text(with_tenant_producers(auth.read_text(), example))
    server = NatsServer(data_dir=tmp_path / "nats", config_file=copy / "accounts.conf")
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
    for config in topology_config().stream_configs():
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
