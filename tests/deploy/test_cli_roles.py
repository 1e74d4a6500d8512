"""The provisioning check of the commands holds for least-privilege users on accounts.conf."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest
from click.testing import CliRunner
from nats_sessions import inbox_prefix
from support.events import evidence_line

from riskpipe.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsServer


pytestmark = pytest.mark.usefixtures("logging_restored")


def _as(server: NatsServer, passwords: dict[str, str], user: str) -> CliRunner:
    url = server.url.replace("nats://", f"nats://{user}:{passwords[user]}@", 1)
    return CliRunner(
        env={
            "RISKPIPE_NATS_URL": url,
            "RISKPIPE_INBOX_PREFIX": inbox_prefix(user),
            "RISKPIPE_LOG_LEVEL": "error",
        }
    )


def test_each_role_runs_its_commands(
    secured_server: NatsServer, nats_passwords: dict[str, str], tmp_path: Path
) -> None:
    """The producer publishes (it may look up EVIDENCE only); the auditor replays and explains."""
    admin = _as(secured_server, nats_passwords, "admin")
    assert admin.invoke(main, ["init"]).exit_code == 0
    source = tmp_path / "ev.jsonl"
    source.write_text(evidence_line("r1") + "\n")
    published = _as(secured_server, nats_passwords, "producer").invoke(
        main, ["publish", str(source)]
    )
    assert published.exit_code == 0, published.output
    assert "stored=1" in published.stdout
    auditor = _as(secured_server, nats_passwords, "auditor")
    for args in (
        ["replay", "--jobs", "1", "--json"],
        ["explain", "--tenant", "t1", "--entity", "e1"],
        ["status", "--json"],
    ):
        result = auditor.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
    # status reads the lease owners too (no worker runs: every partition unowned)
    assert orjson.loads(result.stdout)["leases"]["unowned"] == list(range(16))
