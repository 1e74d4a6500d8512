"""``riskpipe readmodel`` as an operator runs it: its settings and its error paths."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import httpx
import pytest
from support.cli import riskpipe
from support.readmodel import ReadModelProcess

from riskpipe.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsServer


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    """Unset, the URL names readmodel.db in RISKPIPE_DATA_DIR; set, it is used as given."""
    assert (
        Settings(data_dir=tmp_path).readmodel_url == f"sqlite+aiosqlite:///{tmp_path}/readmodel.db"
    )
    given = "postgresql+asyncpg://rp@db.internal/riskpipe"
    assert Settings(database_url=given).readmodel_url == given


def test_a_bad_url_is_a_usage_error_that_hides_the_password() -> None:
    """An unsupported driver or a URL without a host: exit 2, one line, no password shown."""
    flag = riskpipe("readmodel", "--database-url", "mysql://u:hunter2@h/db", "status")
    assert flag.returncode == 2
    assert "driver 'mysql' is not supported" in flag.stderr
    assert "hunter2" not in flag.stderr
    env = riskpipe(
        "readmodel", "status", env={"RISKPIPE_DATABASE_URL": "postgresql://u:hunter2@/db"}
    )
    assert env.returncode == 2
    assert "RISKPIPE_DATABASE_URL" in env.stderr
    assert "needs a host" in env.stderr
    assert "hunter2" not in env.stderr


@pytest.mark.slow
def test_an_unreachable_database_is_one_line_and_exit_1() -> None:
    """PostgreSQL not listening: said before NATS is even tried, without the password."""
    url = f"postgresql+asyncpg://rp:hunter2@127.0.0.1:{_closed_port()}/rm"
    for command in (("run", "--until-idle", "--no-http"), ("rebuild",), ("status",)):
        done = riskpipe(
            "readmodel", *command,
            env={"RISKPIPE_DATABASE_URL": url, "RISKPIPE_NATS_URL": "nats://127.0.0.1:9"},
        )  # fmt: skip
        assert done.returncode == 1, command
        [line] = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
        assert line["event"].startswith("readmodel.")
        assert "cannot reach the database at postgresql+asyncpg://rp:***@127.0.0.1" in line["error"]
        assert "hunter2" not in done.stderr


@pytest.mark.slow
def test_status_before_anything_was_built(nats_server: NatsServer, tmp_path: Path) -> None:
    """Status reads only: on a fresh database it says nothing was built, and builds nothing."""
    env = {
        "RISKPIPE_NATS_URL": nats_server.url,
        "RISKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/rm.db",
    }
    assert riskpipe("init", env=env).returncode == 0
    shown = riskpipe("readmodel", "status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "generation: none yet" in shown.stdout
    found = json.loads(riskpipe("readmodel", "status", "--json", env=env).stdout)
    assert (found["generation"], found["schema_version"], found["lag"]) == (None, 0, 0)
    assert [s["stream"] for s in found["streams"]] == ["RISK", "DLQ", "AUDIT", "REVIEW"]
    assert not (tmp_path / "rm.db").exists()


def test_a_follower_serves_readiness_and_metrics(nats_server: NatsServer, tmp_path: Path) -> None:
    """``run`` serves /readyz (ready once caught up) and its riskpipe_readmodel_* metrics."""
    env = {
        "RISKPIPE_NATS_URL": nats_server.url,
        "RISKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/rm.db",
    }
    assert riskpipe("init", env=env).returncode == 0
    process = ReadModelProcess(env, "--http-port", "0")
    process.start()
    try:
        port = process.wait_for("readmodel.http")["port"]
        process.wait_for("readmodel.caught_up")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert 'riskpipe_readmodel_lag_messages{stream="RISK"} 0.0' in metrics
        assert "riskpipe_readmodel_generation 1.0" in metrics
        assert process.stop() == 0
        assert process.wait_for("readmodel.stopped")["generation"] == 1
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()
