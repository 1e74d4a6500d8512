"""A server's log copied to a file: every line, across a kill and a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from riskpipe.server import NatsServer

if TYPE_CHECKING:
    from pathlib import Path


def test_the_log_file_keeps_each_start(tmp_path: Path) -> None:
    """A chaos run keeps its servers' logs: what a restarted node said is added, not lost."""
    log = tmp_path / "logs" / "nats.log"
    server = NatsServer(data_dir=tmp_path / "nats", log_file=log)
    server.start()
    try:
        server.kill()
        server.start()
    finally:
        server.stop()
    text = log.read_text()
    assert text.count("Server is ready") == 2
    assert text.count("Starting nats-server") == 2
    assert server.log_tail()[-1] in text
