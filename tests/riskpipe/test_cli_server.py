"""``riskpipe server``: the embedded nats-server in the foreground, and its clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from support.tools import require_tool

if TYPE_CHECKING:
    from pathlib import Path


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "riskpipe",
        "server",
        "--quiet",
        "--data-dir",
        str(tmp_path / "d"),
        *args,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigterm_stops_server_and_nats(tmp_path: Path) -> None:
    """SIGTERM stops riskpipe server and its nats-server child, exit code 0."""
    pgrep = require_tool("pgrep")
    with _start(tmp_path, "--port", "-1") as proc:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert "ready on nats://127.0.0.1:" in ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    children = subprocess.run([pgrep, "-P", str(proc.pid)], capture_output=True, check=False)
    assert children.stdout == b""
    assert (tmp_path / "d" / "jetstream").is_dir()


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    """A taken port is reported in one line and exit code 1."""
    with _start(tmp_path, "--port", "-1") as first:
        assert first.stderr is not None
        port = first.stderr.readline().strip().rsplit(":", 1)[1].split(",")[0]
        try:
            second = subprocess.run(
                [sys.executable, "-m", "riskpipe", "server", "--quiet", "--port", port,
                 "--data-dir", str(tmp_path / "other")],
                capture_output=True, text=True, timeout=30, check=False, env=os.environ.copy(),
            )  # fmt: skip
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=20)
    assert second.returncode == 1
    assert "address already in use" in second.stderr
    assert second.stderr.count("\n") == 1
