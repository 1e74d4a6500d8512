"""Operator commands as a user runs them: worker, status, assessments, dlq."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from support.cli import provisioned_with, scored
from support.events import evidence_line

from eventstore import EventStore
from riskpipe.cli import main
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsServer


async def _poison(url: str) -> None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        await store.append_unchecked("evidence", "t1", "e2", b"{broken", msg_id="poison:1")
        await store.append_unchecked("evidence", "t1", "e2", b'{"a": NaN}', msg_id="poison:2")
    finally:
        await store.close()


@pytest.fixture
def cli(nats_server: NatsServer, tmp_path: Path) -> CliRunner:
    """A server holding 6 assessed evidence events and 2 dead letters."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_ACTOR": "carol"})
    severities = ["low", "high", "critical", "low", "medium", "critical"]
    lines = [evidence_line(f"o{i}", minute=i, severity=s) for i, s in enumerate(severities)]
    provisioned_with(runner, tmp_path, lines)
    asyncio.run(_poison(nats_server.url))
    scored(runner)
    return runner


def test_status_accounts_for_every_evidence(cli: CliRunner) -> None:
    """Status --json adds evidence up as assessed + dead-lettered + pending."""
    result = cli.invoke(main, ["status", "--json"])
    assert result.exit_code == 0
    status = json.loads(result.stdout)
    assert (status["evidence"], status["assessed"], status["dead_lettered"]) == (8, 6, 2)
    assert status["balanced"] is True
    assert status["checkpoint"] == 8
    assert status["dlq_depth"] == 2
    assert set(status["streams"]) == {
        "EVIDENCE", "RISK", "DLQ", "AUDIT", "REVIEW", "OUTCOMES", "CONFIGS", "SHADOW"
    }  # fmt: skip
    assert status["streams"]["EVIDENCE"] == 8
    table = cli.invoke(main, ["status"])
    assert "[OK]" in table.stdout
    assert "OUTCOMES" in table.stdout


async def _delete_streams(url: str, *names: str) -> None:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        for name in names:
            await store.client.api(f"STREAM.DELETE.{name}")
    finally:
        await store.close()


def test_status_of_a_store_made_before_the_later_streams(
    cli: CliRunner, nats_server: NatsServer
) -> None:
    """OUTCOMES and SHADOW not made yet (an older init): status lists the others, still adds up."""
    asyncio.run(_delete_streams(nats_server.url, "OUTCOMES", "SHADOW"))
    result = cli.invoke(main, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert set(status["streams"]) == {"EVIDENCE", "RISK", "DLQ", "AUDIT", "REVIEW", "CONFIGS"}
    assert status["balanced"] is True


def test_assessments_in_order_with_level_changes(cli: CliRunner) -> None:
    """Assessments lists an entity's assessments in evidence order, marking level changes."""
    rows = [
        json.loads(x)
        for x in cli.invoke(
            main, ["assessments", "--tenant", "t1", "--entity", "e1", "--json"]
        ).stdout.splitlines()
    ]
    assert [r["evidence"]["id"] for r in rows] == [f"o{i}" for i in range(6)]
    assert any(r["assessment"]["level"] != r["assessment"]["previous_level"] for r in rows)
    table = cli.invoke(main, ["assessments", "--tenant", "t1", "--entity", "e1"])
    assert "->" in table.stdout
    assert "6 assessment(s)" in table.stdout


def test_dlq_list_show_replay_purge(cli: CliRunner) -> None:
    """The DLQ commands list, show, replay and purge dead letters, and status keeps adding up."""
    letters = [
        json.loads(x) for x in cli.invoke(main, ["dlq", "list", "--json"]).stdout.splitlines()
    ]
    assert [x["error_type"] for x in letters] == ["MalformedJSONError", "MalformedJSONError"]
    shown = json.loads(cli.invoke(main, ["dlq", "show", str(letters[0]["dlq_sequence"])]).stdout)
    assert shown["original"] == "{broken"
    assert cli.invoke(main, ["dlq", "show", "999"]).exit_code == 1
    replayed = cli.invoke(
        main, ["dlq", "replay", str(letters[0]["dlq_sequence"]), "--reason", "retry"]
    )
    assert replayed.exit_code == 0
    assert "as evidence sequence 9" in replayed.stdout
    again = cli.invoke(main, ["dlq", "replay", str(letters[0]["dlq_sequence"])])
    assert again.exit_code == 1
    assert "replayed already, as evidence sequence 9" in again.stderr
    refused = cli.invoke(main, ["dlq", "purge", "--all"])
    assert refused.exit_code == 2
    assert "--yes" in refused.output
    purged = cli.invoke(main, ["dlq", "purge", "--all", "--yes"])
    assert "2 purged" in purged.stdout
    assert cli.invoke(main, ["worker", "--until-idle", "--no-http"]).exit_code == 0
    status = json.loads(cli.invoke(main, ["status", "--json"]).stdout)
    assert (status["evidence"], status["dlq_depth"], status["dlq_purged"]) == (9, 1, 2)
    assert status["balanced"] is True, status


@pytest.mark.parametrize("command", ["show", "replay", "purge"])
@pytest.mark.parametrize("seq", ["0", "-3"])
def test_a_dlq_sequence_below_one_is_a_usage_error(command: str, seq: str) -> None:
    """A DLQ sequence is 1 or more: 0 is refused before any request, not a raw server error."""
    result = CliRunner(env={"RISKPIPE_NATS_URL": "nats://127.0.0.1:9"}).invoke(
        main, ["dlq", command, "--", seq]
    )
    assert result.exit_code == 2
    assert "is not in the range x>=1" in result.output
