"""One real PostgreSQL server per test session (initdb, pg_ctl, loopback only), a database per test.

The server runs from a fresh data directory in a temporary directory, on a
free 127.0.0.1 port, and is stopped by its PID at the end of the session.
PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
``postgres`` user (``nobody`` where there is none) through ``setpriv``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from support.tools import postgres_bindir, require_tool

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["PostgresServer", "postgres_server", "postgres_url"]

_USER = "riskpipe"
_names = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged() -> tuple[int, int]:
    """The uid and gid to run PostgreSQL as when this process is root."""
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    return 65534, 65534


class PostgresServer:
    """A PostgreSQL server of its own: ``start``, ``url(database)``, ``stop``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="riskpipe-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = 0
        self.pid: int | None = None
        self._as: list[str] = []

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}\n{log}")

    def start(self) -> None:
        """initdb, then pg_ctl start on a free loopback port; return once it accepts connections.

        Raises:
            RuntimeError: initdb or the server failed (with its output and log).
        """
        self.sockets.mkdir()
        if os.geteuid() == 0:
            uid, gid = _unprivileged()
            for path in (self.root, self.sockets):
                os.chown(path, uid, gid)
            setpriv = require_tool("setpriv")
            self._as = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", _USER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.port = _free_port()
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{_USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL of ``database``, for asyncpg itself."""
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT); SIGKILL if it lingers; remove its files."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            # the postmaster removes its PID file when it is down; it is not our child,
            # so the file, not the PID, says when it is gone
            while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if (self.data / "postmaster.pid").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (skipped where PostgreSQL is not installed)."""
    server = PostgresServer(postgres_bindir())
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def _admin(server: PostgresServer, statement: str) -> None:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    name = f"t{os.getpid()}_{next(_names)}"
    asyncio.run(_admin(postgres_server, f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.url(name)
    finally:
        asyncio.run(_admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
