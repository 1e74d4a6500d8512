"""Every command and the library connect through mutual TLS and each role's credentials.

The servers run the unmodified ``deploy/nats/tls.conf`` and ``accounts.conf``;
the commands are the ones docs/security.md shows, run as real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from typing import TYPE_CHECKING, Self

import pytest
from conftest import DEPLOY
from support.cli import riskpipe
from support.events import evidence, evidence_line
from support.tools import require_tool

from eventstore import ConnectOptions, EventStore
from eventstore.errors import AuthenticationError
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import Pki

TLS_CONF = DEPLOY / "nats" / "tls.conf"
SECURITY_MD = DEPLOY.parent / "docs" / "security.md"


@pytest.fixture
def mtls_nats(
    tmp_path: Path, nats_passwords: dict[str, str], nats_tls_env: Pki
) -> Iterator[NatsServer]:
    """A server started from the unmodified ``deploy/nats/tls.conf``: mutual TLS required."""
    del nats_passwords, nats_tls_env  # needed for the environment variables they export
    server = NatsServer(data_dir=tmp_path / "nats", config_file=TLS_CONF)
    server.start()
    yield server
    server.kill()


def tls_url(server: NatsServer) -> str:
    """The server's address as a ``tls://`` URL."""
    return f"tls://127.0.0.1:{server.port}"


def tls_flags(pki: Pki) -> list[str]:
    """The global flags that trust the CA and present the client certificate."""
    return [
        *("--tls-ca", str(pki.ca)),
        *("--tls-cert", str(pki.client_cert)),
        *("--tls-key", str(pki.client_key)),
    ]


def tls_env(pki: Pki) -> dict[str, str]:
    """The same, as environment variables."""
    return {
        "RISKPIPE_TLS_CA": str(pki.ca),
        "RISKPIPE_TLS_CERT": str(pki.client_cert),
        "RISKPIPE_TLS_KEY": str(pki.client_key),
    }


@pytest.mark.slow
def test_commands_run_over_mutual_tls_with_flags_and_variables(
    mtls_nats: NatsServer, pki: Pki, nats_passwords: dict[str, str], tmp_path: Path
) -> None:
    """init, publish, worker, status and replay work over mutual TLS, each as its own user."""
    url = tls_url(mtls_nats)
    admin = ["--nats-url", url, *tls_flags(pki), "--user", "admin"]
    admin_env = {"RISKPIPE_NATS_PASSWORD": nats_passwords["admin"]}
    init = riskpipe(*admin, "init", env=admin_env)
    assert init.returncode == 0, init.stderr

    # the producer through variables only, its password in the URL
    producer_env = {
        **tls_env(pki),
        "RISKPIPE_NATS_URL": f"tls://producer:{nats_passwords['producer']}@127.0.0.1:{mtls_nats.port}",
        "RISKPIPE_INBOX_PREFIX": "_INBOX_producer",
    }
    evidence_file = tmp_path / "evidence.jsonl"
    evidence_file.write_text(
        "".join(evidence_line(f"ev-{n}", entity="user-42", minute=n) + "\n" for n in range(3))
    )
    published = riskpipe("publish", str(evidence_file), env=producer_env)
    assert published.returncode == 0, published.stderr
    assert "stored=3" in published.stdout

    worker_env = {
        **tls_env(pki),
        "RISKPIPE_NATS_URL": url,
        "RISKPIPE_NATS_USER": "worker",
        "RISKPIPE_NATS_PASSWORD": nats_passwords["worker"],
        "RISKPIPE_INBOX_PREFIX": "_INBOX_worker",
    }
    worked = riskpipe("worker", "--until-idle", "--no-http", env=worker_env)
    assert worked.returncode == 0, worked.stderr

    auditor = ["--nats-url", url, *tls_flags(pki), "--user", "auditor"]
    auditor += ["--inbox-prefix", "_INBOX_auditor"]
    auditor_env = {"RISKPIPE_NATS_PASSWORD": nats_passwords["auditor"]}
    status = riskpipe(*admin, "status", env=admin_env)
    assert status.returncode == 0, status.stderr
    assert "OK" in status.stdout
    replay = riskpipe(*auditor, "replay", "--jobs", "2", env=auditor_env)
    assert replay.returncode == 0, replay.stderr + replay.stdout


def test_without_a_client_certificate_mutual_tls_is_one_clear_line(
    mtls_nats: NatsServer, pki: Pki, nats_passwords: dict[str, str]
) -> None:
    """Trusting the CA without presenting a certificate fails at once, saying why."""
    result = riskpipe(
        *("--nats-url", tls_url(mtls_nats), "--tls-ca", str(pki.ca), "--user", "admin"),
        "status",
        env={"RISKPIPE_NATS_PASSWORD": nats_passwords["admin"]},
    )
    assert result.returncode == 1
    assert "client certificate" in result.stderr
    assert "no answer in time" not in result.stderr
    assert nats_passwords["admin"] not in result.stderr + result.stdout


def test_an_untrusted_server_certificate_is_one_clear_line(
    mtls_nats: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """Without the private CA the server's certificate is refused, not reported as silence."""
    result = riskpipe(
        *("--nats-url", tls_url(mtls_nats), "--user", "admin", "status"),
        env={"RISKPIPE_NATS_PASSWORD": nats_passwords["admin"]},
    )
    assert result.returncode == 1
    assert "certificate is not trusted" in result.stderr
    assert "no answer in time" not in result.stderr


async def test_the_library_connects_with_connect_options(
    mtls_nats: NatsServer, pki: Pki, nats_passwords: dict[str, str]
) -> None:
    """EventStore.connect takes the TLS files and the password as ConnectOptions."""
    options = ConnectOptions(
        tls_ca=pki.ca,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
        user="admin",
        password=nats_passwords["admin"],
    )
    async with await EventStore.connect(
        tls_url(mtls_nats), schemas=build_schemas(), config=topology_config(), options=options
    ) as store:
        await store.provision()
        result = await store.append(evidence("lib-1"))
    assert (result.stream, result.sequence) == ("EVIDENCE", 1)
    assert nats_passwords["admin"] not in repr(options)


async def test_a_wrong_password_is_refused_at_once(mtls_nats: NatsServer, pki: Pki) -> None:
    """A refused password ends connecting with an authentication error, not a time-out."""
    options = ConnectOptions(
        tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key,
        user="admin", password="wrong-password",  # noqa: S106 - refused on purpose
    )  # fmt: skip
    async with asyncio.timeout(4):  # the connect time-out is 5 s
        with pytest.raises(AuthenticationError, match="refused the credentials"):
            await EventStore.connect(
                tls_url(mtls_nats),
                schemas=build_schemas(),
                config=topology_config(),
                options=options,
            )


def documented_openssl_commands() -> str:
    """The shell block that follows "With openssl:" in docs/security.md."""
    text = SECURITY_MD.read_text()
    block = re.search(r"With openssl:\n\n```sh\n(.*?)```", text, re.DOTALL)
    assert block is not None, "docs/security.md lost its openssl commands"
    return block[1]


@pytest.fixture
def documented_pki(tmp_path: Path, pki: Pki) -> Path:
    """A directory of certificates made by running the documented commands."""
    del pki  # its fixture checks that openssl is there, as for every TLS test
    directory = tmp_path / "pki"
    directory.mkdir()
    subprocess.run(
        [require_tool("bash"), "-euo", "pipefail", "-c", documented_openssl_commands()],
        cwd=directory, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return directory


async def test_the_documented_certificates_serve_mutual_tls(
    tmp_path: Path,
    documented_pki: Path,
    nats_passwords: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The openssl commands in docs/security.md make certificates tls.conf and the client accept."""
    for name, file in (("CERT", "server.pem"), ("KEY", "server-key.pem"), ("CA", "ca.pem")):
        monkeypatch.setenv(f"NATS_TLS_{name}", str(documented_pki / file))
    server = NatsServer(data_dir=tmp_path / "nats", config_file=TLS_CONF)
    server.start()
    try:
        options = ConnectOptions(
            tls_ca=documented_pki / "ca.pem",
            tls_cert=documented_pki / "client.pem",
            tls_key=documented_pki / "client-key.pem",
            user="admin",
            password=nats_passwords["admin"],
        )
        async with await EventStore.connect(
            tls_url(server), schemas=build_schemas(), config=topology_config(), options=options
        ) as store:
            assert (await store.provision()).ok
    finally:
        server.kill()


class Tap:
    """A TCP relay in front of a server that keeps every byte the client sent through it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._relays: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._relays, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, keep: bool) -> None:
            while data := await src.read(65536):
                if keep:
                    self.sent.extend(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        try:
            await asyncio.gather(
                pump(reader, up_writer, keep=True), pump(up_reader, writer, keep=False)
            )
        except ConnectionError:
            pass  # either side hung up
        finally:
            for each in (writer, up_writer):
                each.close()
                with contextlib.suppress(ConnectionError):
                    await each.wait_closed()


@pytest.mark.parametrize("where", ["options", "url"])
async def test_a_password_never_goes_out_in_plain_text_when_tls_was_asked_for(
    secured_server: NatsServer, nats_passwords: dict[str, str], pki: Pki, where: str
) -> None:
    """A server that does not start TLS for a tls:// client never sees the password."""
    password = nats_passwords["admin"]
    async with Tap(secured_server.port) as tap:
        url = f"tls://127.0.0.1:{tap.port}"
        options = ConnectOptions(tls_ca=pki.ca)
        if where == "url":
            url = url.replace("tls://", f"tls://admin:{password}@")
        else:
            options = ConnectOptions(tls_ca=pki.ca, user="admin", password=password)
        with pytest.raises(AuthenticationError, match="credentials not sent in plain text"):
            await EventStore.connect(
                url, schemas=build_schemas(), config=topology_config(), options=options
            )
    assert b"CONNECT" not in tap.sent
    assert password.encode() not in tap.sent


async def test_tls_hostname_names_the_certificate_to_expect(
    mtls_nats: NatsServer, pki: Pki, nats_passwords: dict[str, str]
) -> None:
    """The certificate is checked against tls_hostname: its own name passes, another fails."""

    def options(hostname: str) -> ConnectOptions:
        return ConnectOptions(
            tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key,
            tls_hostname=hostname, user="admin", password=nats_passwords["admin"],
        )  # fmt: skip

    async with await EventStore.connect(
        tls_url(mtls_nats),
        schemas=build_schemas(),
        config=topology_config(),
        options=options("localhost"),
    ) as store:
        assert store.client.connected
    with pytest.raises(AuthenticationError, match="not trusted: Hostname mismatch"):
        await EventStore.connect(
            tls_url(mtls_nats),
            schemas=build_schemas(),
            config=topology_config(),
            options=options("nats.example.com"),
        )
