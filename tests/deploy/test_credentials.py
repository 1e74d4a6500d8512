"""Credentials: each role through flags and variables, clear refusals, no secret in any output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from typing import TYPE_CHECKING

import nkeys
import pytest
from conftest import DEPLOY
from nats_operator import Operator
from nats_sessions import inbox_prefix
from support.cli import riskpipe
from support.events import evidence, evidence_line

from eventstore import ConnectOptions, EventStore
from eventstore.errors import CredentialsError, PermissionDeniedError
from riskpipe.server import NatsServer
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import Pki

ROLES = ("admin", "producer", "worker", "auditor", "sys")
NOWHERE = "nats://127.0.0.1:9"  # the discard port: nothing there speaks NATS


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, after checking it is the only one."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def user_seed() -> bytes:
    """A fresh user NKey seed (``SU...``)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    """The public key (``U...``) of a seed."""
    key_pair = nkeys.from_seed(bytearray(seed))
    try:
        return str(key_pair.public_key.decode())
    finally:
        key_pair.wipe()


# -- files that cannot be used -------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    """A valid user seed in a file."""
    path = tmp_path / "user.nk"
    path.write_bytes(user_seed() + b"\n")
    return path


_FIELD = {
    "--tls-ca": "tls_ca",
    "--tls-cert": "tls_cert",
    "--tls-key": "tls_key",
    "--creds": "creds",
    "--nkey-seed": "nkey_seed",
    "--user": "user",
    "--token": "token",
}


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--tls-ca", "{tmp}/missing-ca.pem"], "TLS CA file {tmp}/missing-ca.pem does not exist"),
        (["--tls-ca", "{tmp}/garbage.pem"], "TLS CA file {tmp}/garbage.pem: no usable PEM"),
        (["--tls-ca", "{tmp}"], "TLS CA file {tmp} is a directory"),
        (["--tls-ca", "/dev/zero"], "TLS CA file /dev/zero is not a regular file"),
        (
            ["--tls-ca", "{ca}", "--tls-cert", "{cert}"],
            "a TLS client certificate and its key go together: the key is missing",
        ),
        (
            ["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{tmp}/missing-key.pem"],
            "TLS key file {tmp}/missing-key.pem does not exist",
        ),
        (
            ["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{tmp}/garbage.pem"],
            "TLS key file {tmp}/garbage.pem: not a PEM private key",
        ),
        (
            ["--tls-ca", "{ca}", "--tls-cert", "{cert}", "--tls-key", "{server_key}"],
            "TLS certificate {cert} and key {server_key} cannot be used together",
        ),
        (["--creds", "{tmp}/missing.creds"], "NATS creds file {tmp}/missing.creds does not exist"),
        (["--creds", "{tmp}/garbage.pem"], "NATS creds file {tmp}/garbage.pem: no user JWT block"),
        (["--creds", "{tmp}/no-seed.creds"], "NATS creds file {tmp}/no-seed.creds: no user NKey"),
        (["--nkey-seed", "{tmp}/garbage.pem"], "NKey seed file {tmp}/garbage.pem: not a valid"),
        (["--nkey-seed", "{seed}", "--user", "u"], "a NATS user and password go together"),
        (["--nkey-seed", "{seed}", "--token", "t"], "not an NKey seed and a token"),
    ],
)
async def test_an_unusable_file_is_one_line_naming_it(
    tmp_path: Path, pki: Pki, seed_file: Path, flags: list[str], named: str
) -> None:
    """A missing, malformed or mismatched file, or contradicting options, is one line at once."""
    _write(tmp_path / "garbage.pem", "not a certificate, a key or a creds file\n")
    jwt_only = "-----BEGIN NATS USER JWT-----\neyJhbGciOi.e30.c2ln\n------END NATS USER JWT------\n"
    _write(tmp_path / "no-seed.creds", jwt_only)
    names = {
        "tmp": str(tmp_path),
        "ca": str(pki.ca),
        "cert": str(pki.client_cert),
        "server_key": str(pki.server_key),
        "seed": str(seed_file),
    }
    given = [flag.format(**names) for flag in flags]
    options = ConnectOptions(**{_FIELD[f]: v for f, v in zip(given[::2], given[1::2], strict=True)})
    async with asyncio.timeout(1):  # checked before connecting: no connect time-out
        with pytest.raises(CredentialsError) as raised:
            await EventStore.connect(
                NOWHERE, schemas=build_schemas(), config=topology_config(), options=options
            )
    assert named.format(**names) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_command_line_reports_an_unusable_file_in_one_line(tmp_path: Path) -> None:
    """Through the flags, a missing file ends the command with one line naming it."""
    missing = tmp_path / "missing-ca.pem"
    line = one_line_error(riskpipe("--nats-url", NOWHERE, "--tls-ca", str(missing), "status"))
    assert line == f"Error: TLS CA file {missing} does not exist"


def test_a_file_given_by_variable_is_checked_the_same(tmp_path: Path) -> None:
    """The RISKPIPE_* variables go through the same checks as the flags."""
    line = one_line_error(
        riskpipe(
            "status", env={"RISKPIPE_NATS_URL": NOWHERE, "RISKPIPE_TLS_CA": str(tmp_path / "x.pem")}
        )
    )
    assert f"TLS CA file {tmp_path / 'x.pem'} does not exist" in line


def test_a_bad_seed_is_never_quoted(tmp_path: Path) -> None:
    """A seed file that does not parse is named, its content is not shown."""
    secret = "SUAMNOTAREALSEEDBUTSECRETANYWAY"  # noqa: S105 - must never be printed
    path = _write(tmp_path / "bad.nk", secret + "\n")
    line = one_line_error(riskpipe("--nats-url", NOWHERE, "--nkey-seed", str(path), "status"))
    assert str(path) in line
    assert secret not in line


# -- each role on the accounts config ------------------------------------------


def _role_env(server: NatsServer, passwords: dict[str, str], user: str) -> dict[str, str]:
    return {
        "RISKPIPE_NATS_URL": server.url,
        "RISKPIPE_NATS_USER": user,
        "RISKPIPE_NATS_PASSWORD": passwords[user],
        "RISKPIPE_INBOX_PREFIX": inbox_prefix(user),
    }


def test_a_command_the_role_may_not_run_reads_permission_denied(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """The producer asking for the pipeline status is refused by name at once, not timed out."""
    assert riskpipe("init", env=_role_env(secured_server, nats_passwords, "admin")).returncode == 0
    started = time.monotonic()
    result = riskpipe("status", env=_role_env(secured_server, nats_passwords, "producer"))
    assert result.returncode == 1
    assert "Error: permission denied: $js.api.stream.info.risk" in result.stderr.splitlines()
    assert time.monotonic() - started < 4  # a refused request waits 5 s for its time-out
    assert "timed out" not in result.stderr


def test_a_command_checking_its_streams_first_is_denied_at_once(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """The producer listing dead letters is refused while the command checks the streams."""
    assert riskpipe("init", env=_role_env(secured_server, nats_passwords, "admin")).returncode == 0
    started = time.monotonic()
    result = riskpipe("dlq", "list", env=_role_env(secured_server, nats_passwords, "producer"))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: permission denied: $js.api.stream.info."
    )
    assert time.monotonic() - started < 4  # a refused request waits 5 s for its time-out


def test_provisioning_needs_the_admin(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """The worker may check the streams but not create them: init on a fresh server is refused."""
    result = riskpipe("init", env=_role_env(secured_server, nats_passwords, "worker"))
    assert result.returncode == 1
    assert "Error: permission denied: $js.api.stream.create.evidence" in result.stderr


async def test_a_refused_append_raises_permission_denied_in_the_library(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """A worker appending evidence gets PermissionDeniedError naming the subject, at once."""
    async with await EventStore.connect(
        secured_server.url,
        schemas=build_schemas(),
        config=topology_config(),
        options=ConnectOptions(user="admin", password=nats_passwords["admin"]),
    ) as admin:
        await admin.provision()
    worker = ConnectOptions(
        user="worker", password=nats_passwords["worker"], inbox_prefix=inbox_prefix("worker")
    )
    async with asyncio.timeout(3):  # an append waits 5 s for its PubAck, and retries
        with pytest.raises(PermissionDeniedError) as refused:
            async with await EventStore.connect(
                secured_server.url,
                schemas=build_schemas(),
                config=topology_config(),
                options=worker,
            ) as store:
                await store.append(evidence("denied-1", tenant="t1", entity="e1"))
    assert refused.value.subject == "rp.evidence.t1.e1"
    assert str(refused.value) == "permission denied: rp.evidence.t1.e1"


async def test_a_denial_swallowed_inside_the_block_still_ends_it(
    secured_server: NatsServer, nats_passwords: dict[str, str]
) -> None:
    """Code that swallows the cancellation cannot hide a denial: leaving the block raises it."""
    worker = ConnectOptions(
        user="worker", password=nats_passwords["worker"], inbox_prefix=inbox_prefix("worker")
    )

    async def careless() -> None:
        async with await EventStore.connect(
            secured_server.url, schemas=build_schemas(), config=topology_config(), options=worker
        ) as store:
            with contextlib.suppress(asyncio.CancelledError):
                await store.append(evidence("denied-2", tenant="t1", entity="e1"))

    async with asyncio.timeout(3):
        with pytest.raises(PermissionDeniedError, match=r"rp\.evidence\.t1\.e1"):
            await careless()
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0  # the task is not left cancelled


# -- NKeys instead of passwords -------------------------------------------------


@pytest.fixture
def nkey_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A seed file per user; the public keys exported as the NATS_<USER>_NKEY variables."""
    seeds = {}
    for user in ROLES:
        seed = user_seed()
        seeds[user] = _write(tmp_path / f"{user}.nk", seed.decode() + "\n")
        monkeypatch.setenv(f"NATS_{user.upper()}_NKEY", public_key(seed))
    return seeds


def with_nkeys(auth_conf: str) -> str:
    """auth.conf with each password user made an NKey user, as docs/security.md says."""
    rewritten, count = re.subn(
        r"user: \w+, password: \$NATS_(\w+)_PASSWORD", r"nkey: $NATS_\1_NKEY", auth_conf
    )
    assert count == len(ROLES)
    return rewritten


@pytest.fixture
def nkey_server(tmp_path: Path, nkey_seeds: dict[str, Path]) -> Iterator[NatsServer]:
    """``accounts.conf`` with its users identified by NKeys instead of passwords."""
    del nkey_seeds  # needed for the variables it exports
    copy = tmp_path / "conf"
    shutil.copytree(DEPLOY / "nats", copy)
    (copy / "auth.conf").write_text(with_nkeys((copy / "auth.conf").read_text()))
    server = NatsServer(data_dir=tmp_path / "nats", config_file=copy / "accounts.conf")
    server.start()
    yield server
    server.kill()


@pytest.mark.slow
def test_each_role_connects_with_its_nkey_seed(
    nkey_server: NatsServer, nkey_seeds: dict[str, Path]
) -> None:
    """The admin provisions, the producer publishes, the worker scores, each with --nkey-seed."""
    url = ["--nats-url", nkey_server.url]
    assert riskpipe(*url, "--nkey-seed", str(nkey_seeds["admin"]), "init").returncode == 0
    line = evidence_line("nk-1", entity="user-7") + "\n"
    producer = ("--nkey-seed", str(nkey_seeds["producer"]), "--inbox-prefix", "_INBOX_producer")
    published = riskpipe(*url, *producer, "publish", "-", stdin=line)
    assert "stored=1" in published.stdout, published.stderr
    worked = riskpipe(
        "worker", "--until-idle", "--no-http",
        env={
            "RISKPIPE_NATS_URL": nkey_server.url,
            "RISKPIPE_NKEY_SEED": str(nkey_seeds["worker"]),
            "RISKPIPE_INBOX_PREFIX": "_INBOX_worker",
        },
    )  # fmt: skip
    assert worked.returncode == 0, worked.stderr
    status = riskpipe(*url, "--nkey-seed", str(nkey_seeds["admin"]), "status")
    assert "OK" in status.stdout, status.stderr
    denied = riskpipe(*url, *producer, "status")
    assert "permission denied" in denied.stderr


# -- tokens ---------------------------------------------------------------------


@pytest.fixture
def token_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServer]:
    """A JetStream server whose only login is a token, read from its environment."""
    monkeypatch.setenv("TEST_NATS_TOKEN", "tok-" + os.urandom(16).hex())
    config = _write(
        tmp_path / "token.conf", "jetstream: enabled\nauthorization { token: $TEST_NATS_TOKEN }\n"
    )
    server = NatsServer(data_dir=tmp_path / "nats", config_file=config)
    server.start()
    yield server
    server.kill()


def test_a_token_by_flag_variable_or_url(token_server: NatsServer) -> None:
    """The token works as --token, as RISKPIPE_NATS_TOKEN and in the URL; a wrong one is refused.

    Empty variables beside it count as unset.
    """
    token = os.environ["TEST_NATS_TOKEN"]
    assert riskpipe("--nats-url", token_server.url, "--token", token, "init").returncode == 0
    unused = dict.fromkeys(("RISKPIPE_TLS_CA", "RISKPIPE_NATS_USER", "RISKPIPE_NKEY_SEED"), "")
    by_env = riskpipe(
        "status",
        env={"RISKPIPE_NATS_URL": token_server.url, "RISKPIPE_NATS_TOKEN": token, **unused},
    )  # an empty variable is an unused one
    assert by_env.returncode == 0, by_env.stderr
    in_url = token_server.url.replace("nats://", f"nats://{token}@")
    assert riskpipe("--nats-url", in_url, "status").returncode == 0
    wrong = one_line_error(riskpipe("--nats-url", token_server.url, "--token", "nope", "status"))
    assert "refused the credentials" in wrong


# -- no secret in any output ----------------------------------------------------


def test_no_secret_in_logs_or_errors(
    secured_server: NatsServer, nats_passwords: dict[str, str], tmp_path: Path
) -> None:
    """Passwords, tokens and seeds never reach stdout or stderr, at debug level, on any path."""
    password = nats_passwords["admin"]
    url = secured_server.url.replace("nats://", f"nats://admin:{password}@")
    seed = user_seed()
    seed_file = _write(tmp_path / "u.nk", seed.decode())
    runs = [
        riskpipe("--log-level", "debug", "--nats-url", url, "init"),
        riskpipe("--log-level", "debug", "--nats-url", url, "status"),
        riskpipe(
            "--log-level", "debug", "--nats-url", url.replace(password, password + "x"), "status"
        ),  # refused: the URL is in the error line
        riskpipe("--log-level", "debug", "--nats-url", url, "--token", "tok-secret-1", "status"),
        riskpipe(
            "--log-level", "debug", "--nats-url", secured_server.url, "--user", "producer",
            "--password", nats_passwords["producer"], "status",
        ),  # denied
        riskpipe(
            "--log-level", "debug", "--nats-url", secured_server.url,
            "--nkey-seed", str(seed_file), "status",
        ),  # an NKey the server does not know
    ]  # fmt: skip
    output = "\n".join(run.stdout + run.stderr for run in runs)
    assert "***@127.0.0.1" in output  # the refused URL is shown, redacted
    assert "permission denied" in output
    for secret in (password, password + "x", nats_passwords["producer"], "tok-secret-1"):
        assert secret not in output
    assert seed.decode() not in output


_HIDDEN = "pw-hidden-1"  # a test secret that must never be printed


async def test_connect_options_never_show_their_secrets(seed_file: Path) -> None:
    """A ConnectOptions repr hides the password and token, and an unusable seed is not quoted."""
    options = ConnectOptions(user="u", password=_HIDDEN, token=_HIDDEN + "t")
    assert _HIDDEN not in repr(options)
    assert _HIDDEN not in str(options.model_dump())
    with pytest.raises(CredentialsError, match="give one way"):
        await EventStore.connect(
            NOWHERE,
            schemas=build_schemas(),
            config=topology_config(),
            options=ConnectOptions(nkey_seed=seed_file, user="u", password=_HIDDEN),
        )


# -- .creds files (operator mode) ------------------------------------------------

PRODUCER_PUBLISH = [
    "rp.evidence.>",
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.EVIDENCE",
    "$JS.API.STREAM.MSG.GET.EVIDENCE",
    "$JS.API.DIRECT.GET.EVIDENCE",
    "$JS.API.DIRECT.GET.EVIDENCE.>",
]


@pytest.fixture
def operator_server(tmp_path: Path) -> Iterator[tuple[NatsServer, Operator]]:
    """A server in operator mode (JWTs), as ``nsc`` sets one up."""
    operator = Operator()
    config = operator.server_config(tmp_path / "operator.conf")
    server = NatsServer(data_dir=tmp_path / "nats", config_file=config)
    server.start()
    yield server, operator
    server.kill()


def test_creds_files_by_flag_and_variable(
    operator_server: tuple[NatsServer, Operator], tmp_path: Path
) -> None:
    """An admin's .creds provisions, a producer's publishes and is refused the status."""
    server, operator = operator_server
    admin = operator.creds(tmp_path / "admin.creds", "admin")
    producer = operator.creds(tmp_path / "producer.creds", "producer", PRODUCER_PUBLISH)
    assert riskpipe("--nats-url", server.url, "--creds", str(admin), "init").returncode == 0
    env = {"RISKPIPE_NATS_URL": server.url, "RISKPIPE_NATS_CREDS": str(producer)}
    published = riskpipe("publish", "-", env=env, stdin=evidence_line("cr-1") + "\n")
    assert "stored=1" in published.stdout, published.stderr
    denied = riskpipe("status", env=env)
    assert "Error: permission denied: $js.api.stream.info.risk" in denied.stderr
    assert producer.read_text().split("SEED-----\n")[1][:20] not in denied.stderr
