"""Text a producer controls is printed as it is: never read as rich markup or emoji codes."""

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

pytestmark = pytest.mark.usefixtures("logging_restored")

TENANT, ENTITY = "t[bold]", "e:thumbs_up:"
IDS = ("a[bold]b[/]c:thumbs_up:", "d[/]e[red]f")
"""Ids, a tenant and an entity any producer may send: `[`, `]`, `/` and `:` are allowed."""


async def _misaddressed(url: str) -> None:
    """A valid event about another entity, stored on the marked-up entity's subject."""
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    try:
        payload = evidence_line(IDS[1], tenant=TENANT, entity="elsewhere", minute=1).encode()
        await store.append_unchecked("evidence", TENANT, ENTITY, payload, msg_id="misaddressed")
    finally:
        await store.close()


@pytest.fixture
def cli(nats_server: NatsServer, tmp_path: Path) -> CliRunner:
    """An assessed evidence event and a dead-lettered one, every name full of markup."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})
    provisioned_with(runner, tmp_path, [evidence_line(IDS[0], tenant=TENANT, entity=ENTITY)])
    asyncio.run(_misaddressed(nats_server.url))
    scored(runner)
    return runner


def test_dlq_list_and_show_print_names_and_errors_as_they_are(cli: CliRunner) -> None:
    """`dlq list` shows the tenant/entity, id and error verbatim; `dlq show` too."""
    listed = cli.invoke(main, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"{TENANT}/{ENTITY}" in listed.stdout
    assert IDS[1] in listed.stdout
    assert "MisaddressedEventError: stored on" in listed.stdout
    assert f".{TENANT}.{ENTITY}'" in listed.stdout
    assert "\N{THUMBS UP SIGN}" not in listed.stdout
    shown = json.loads(cli.invoke(main, ["dlq", "show", "1"]).stdout)
    assert shown["evidence_id"] == IDS[1]
    stored = topology_config().stored(f"rp.evidence.{TENANT}.{ENTITY}")
    assert f"stored on '{stored}'" in json.dumps(shown)


def test_events_and_assessments_print_ids_as_they_are(cli: CliRunner) -> None:
    """The evidence and assessment tables keep every `[`, `]`, `/` and `:` of an id."""
    for command in ("events", "assessments"):
        table = cli.invoke(main, [command, "--tenant", TENANT, "--entity", ENTITY])
        assert table.exit_code == 0, table.output
        assert IDS[0] in table.stdout, command
        assert "\N{THUMBS UP SIGN}" not in table.stdout
