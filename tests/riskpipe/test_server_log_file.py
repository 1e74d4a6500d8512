"""A server's own words: its log copied to a file across restarts, and why it did not start."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from riskpipe.server import NatsServer, ServerStartError

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


def test_a_config_it_cannot_parse_is_named_in_the_error(tmp_path: Path) -> None:
    """nats-server says so without a log prefix and exits: that line is the reason given."""
    config = tmp_path / "broken.conf"
    config.write_text("accounts { BROKEN {\n")
    server = NatsServer(data_dir=tmp_path / "nats", config_file=config)
    with pytest.raises(ServerStartError, match=r"exited before it was ready: .*[Pp]arse error"):
        server.start(timeout=10)
