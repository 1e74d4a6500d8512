"""Exit statuses are what `--help` and docs/operations.md say they are."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from support.cli import provisioned_with, scored
from support.events import evidence_line
from support.pipeline import run_worker

from eventstore import EventStore
from riskpipe.cli import main
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from riskpipe.server import NatsServer

pytestmark = pytest.mark.usefixtures("logging_restored")

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


async def _dead_letter_deleted(url: str) -> None:
    """A poison message dead-lettered, and its dead letter deleted around `dlq purge`."""
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.append_unchecked("evidence", "t1", "e2", b"{broken", msg_id="poison:1")
        await run_worker(store, url)
        await store.delete(
            store.config.stream_for("dlq"), 1
        )  # no purge record: the evidence is lost
    finally:
        await store.close()


@pytest.fixture
def cli(nats_server: NatsServer, tmp_path: Path) -> CliRunner:
    """A server where 3 evidence events were published and all assessed."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})
    provisioned_with(runner, tmp_path, [evidence_line(f"a{i}") for i in range(3)])
    scored(runner)
    return runner


def test_status_exits_2_only_when_the_accounting_has_a_gap(
    cli: CliRunner, nats_server: NatsServer
) -> None:
    """Status exits 0 while the numbers add up, and 2 once they do not with nothing in flight."""
    assert cli.invoke(main, ["status"]).exit_code == 0
    asyncio.run(_dead_letter_deleted(nats_server.url))
    result = cli.invoke(main, ["status", "--json"])
    assert result.exit_code == 2
    status = json.loads(result.stdout)
    assert (status["balanced"], status["consumer"]["num_ack_pending"]) == (False, 0)
    assert status["gap"] == 1
    assert "GAP: 1 evidence event(s)" in cli.invoke(main, ["status"]).stdout


def _codes(help_text: str) -> list[str]:
    """The exit statuses a command's --help lists under "Exit status:"."""
    block = help_text.split("Exit status:", 1)[1].split("Options:", 1)[0]
    return re.findall(r"^\s+(\d)\s{2}", block, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ("status", ["0", "1", "2", "3"]),
        ("replay", ["0", "1", "2"]),
        ("publish", ["0", "1"]),
        ("init", ["0", "1"]),
    ],
)
def test_help_and_operations_md_list_every_exit_status(command: str, codes: list[str]) -> None:
    """A command's --help lists its exit statuses, and operations.md has a row for it."""
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert _codes(result.stdout) == codes
    doc = OPERATIONS.read_text().split("## Command-line output and exit status", 1)[1]
    section = doc.split("\n## ", 1)[0]
    rows = [row for row in section.splitlines() if row.startswith(f"| `{command}` |")]
    assert len(rows) == 1
    assert len(rows[0].split(" | ")) == 5, "a description (or -) for 0, 1, 2 and 3"
