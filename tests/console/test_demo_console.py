"""``riskpipe demo --console``: the demo stays up, with the console at the printed URL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest


@pytest.mark.slow
def test_the_demo_keeps_the_console_running_and_prints_how_to_log_in() -> None:
    """The printed URL serves the login page; a printed token logs in; SIGTERM stops it all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKPIPE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskpipe", "demo", "--events", "60", "--console"],
        env={**env, "RISKPIPE_API_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "log in as admin" in line:
                break
        text = "".join(lines)
        url = re.search(r"the console: (http://\S+/console/)", text)
        token = re.search(r"log in as reviewer\s+with (\S+)", text)
        assert url is not None, text
        assert token is not None, text
        with httpx.Client(base_url=url.group(1), timeout=10) as http:
            login = http.get("login")
            assert login.status_code == 200
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
            assert csrf is not None
            done = http.post("login", data={"token": token.group(1), "csrf": csrf.group(1)})
            assert done.status_code == 303
            queue = http.get("queue")
            assert queue.status_code == 200
            assert "Review queue" in queue.text
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
