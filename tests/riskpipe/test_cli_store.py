"""The store's commands as a user runs them: init, publish, events, schema."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import nats
import pytest
from click.testing import CliRunner
from support.events import evidence_line

from eventstore import EventStore
from riskpipe.cli import main
from riskpipe.topology import topology_config
from riskpipe.wiring import build_schemas

if TYPE_CHECKING:
    from pathlib import Path

    from riskpipe.server import NatsServer


@pytest.fixture
def cli(nats_server: NatsServer) -> CliRunner:
    """A CLI runner pointed at a fresh server."""
    return CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url})


def _write(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    return path


def test_init_creates_then_finds(cli: CliRunner) -> None:
    """Init creates the streams once and reports them as found afterwards."""
    first = cli.invoke(main, ["init"])
    assert first.exit_code == 0, first.output
    assert "created  EVIDENCE" in first.output
    second = cli.invoke(main, ["init"])
    assert second.exit_code == 0
    assert "created" not in second.output
    assert "found    EVIDENCE" in second.output


def test_publish_summary_and_rerun_idempotency(cli: CliRunner, tmp_path: Path) -> None:
    """Publish stores every valid line; a re-run stores nothing and counts duplicates."""
    cli.invoke(main, ["init"])
    path = _write(
        tmp_path / "ev.jsonl", [evidence_line(f"p{i}", entity=f"e{i % 3}") for i in range(25)]
    )
    first = cli.invoke(main, ["publish", str(path)])
    assert first.exit_code == 0, first.output
    assert "stored=25 duplicates=0 rejected=0" in first.output
    again = cli.invoke(main, ["publish", str(path), "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["duplicates"] == 25
    assert json.loads(again.stdout)["stored"] == 0


def test_publish_reports_each_bad_line(cli: CliRunner, tmp_path: Path) -> None:
    """Each invalid line is reported with its number and reason; the valid ones are stored."""
    cli.invoke(main, ["init"])
    lines: list[str | bytes] = [
        evidence_line("ok1"),
        "{not json",
        b'{"id": "\xff"}',
        evidence_line("bad-entity").replace('"subject":"e1"', '"subject":"a.b"'),
        '{"a": NaN}',
        '{"id":"dup",' + evidence_line("ok2")[1:],
        evidence_line("ok3").replace("riskpipe.evidence.recorded.v1", "riskpipe.unknown.v1"),
        "x" * (70 * 1024),
        evidence_line("ok4"),
    ]
    result = cli.invoke(main, ["publish", str(_write(tmp_path / "mixed.jsonl", lines))])
    assert result.exit_code == 1
    assert "stored=2 duplicates=0 rejected=7" in result.stdout
    for n in (2, 3, 4, 5, 6, 7, 8):
        assert f"line {n}: " in result.stderr
    errors = dict(
        line.split(": ", 1) for line in result.stderr.splitlines() if line.startswith("line ")
    )
    assert "invalid subject 'a.b'" in errors["line 4"]
    assert "duplicate key 'id'" in errors["line 6"]
    assert "unknown event type" in errors["line 7"]
    assert "limit is 65536" in errors["line 8"]
    listed = cli.invoke(main, ["events", "--tenant", "t1", "--entity", "e1", "--json"])
    assert [json.loads(x)["event"]["id"] for x in listed.stdout.splitlines()] == ["ok1", "ok4"]


def test_publish_takes_a_file_mixing_v1_and_v2(cli: CliRunner, tmp_path: Path) -> None:
    """v1 and v2 lines are stored as written; a bad v2 line is reported with its reason."""
    cli.invoke(main, ["init"])
    lines: list[str | bytes] = [
        evidence_line("m1"),
        evidence_line("m2", version=2, impact=0.7, attributes={"geo": {"country": "NL"}}),
        evidence_line("m3", version=2),
        evidence_line("m4", version=2, impact=1.5),
        evidence_line("m5", version=2, attributes={"geo": {"city": {"name": "Delft"}}}),
        evidence_line("m6", impact=0.5),
        evidence_line("m7", version=2, impact=0.25).replace("0.25", "NaN"),
        evidence_line("m8", version=3),
        evidence_line("m9", minute=1),
    ]
    result = cli.invoke(main, ["publish", str(_write(tmp_path / "mixed.jsonl", lines))])
    assert result.exit_code == 1
    assert "stored=4 duplicates=0 rejected=5" in result.stdout
    errors = dict(
        line.split(": ", 1) for line in result.stderr.splitlines() if line.startswith("line ")
    )
    assert sorted(errors) == ["line 4", "line 5", "line 6", "line 7", "line 8"]
    assert "riskpipe.evidence.recorded.v2: data.impact" in errors["line 4"]
    assert "geo.city: an attribute's object holds scalars only" in errors["line 5"]
    assert "riskpipe.evidence.recorded.v1: data.impact: Extra inputs" in errors["line 6"]
    assert "NaN" in errors["line 7"]
    assert "unknown event type 'riskpipe.evidence.recorded.v3'" in errors["line 8"]
    listed = cli.invoke(main, ["events", "--tenant", "t1", "--entity", "e1", "--json"])
    stored = [json.loads(x)["event"] for x in listed.stdout.splitlines()]
    assert [(e["id"], e["type"][-2:]) for e in stored] == [
        ("m1", "v1"), ("m2", "v2"), ("m3", "v2"), ("m9", "v1"),
    ]  # fmt: skip
    assert stored[1]["data"]["impact"] == 0.7
    assert stored[1]["data"]["attributes"] == {"geo": {"country": "NL"}}


def test_publish_from_stdin(cli: CliRunner) -> None:
    """`publish -` reads JSONL from standard input."""
    cli.invoke(main, ["init"])
    result = cli.invoke(main, ["publish", "-"], input=evidence_line("s1") + "\n")
    assert result.exit_code == 0
    assert "stored=1" in result.stdout


def test_events_table(cli: CliRunner, tmp_path: Path) -> None:
    """Events prints an entity's evidence in order as a table."""
    cli.invoke(main, ["init"])
    cli.invoke(
        main,
        ["publish", str(_write(tmp_path / "a.jsonl", [evidence_line("t1"), evidence_line("t2")]))],
    )
    result = cli.invoke(main, ["events", "--tenant", "t1", "--entity", "e1"])
    assert result.exit_code == 0
    assert result.stdout.index("t1") < result.stdout.index("t2")
    assert "2 event(s)" in result.stdout


def test_unreachable_server_is_one_clear_line() -> None:
    """With no server listening, a command fails with one readable line, not a traceback."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": "nats://127.0.0.1:1"})
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.output


def test_schema_prints_every_type() -> None:
    """Schema prints JSON Schema for the envelope and every event type."""
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schemas = json.loads(result.stdout)
    assert {"envelope", "riskpipe.evidence.recorded.v1", "riskpipe.evidence.recorded.v2"} <= set(
        schemas
    )
    assert "pattern" in schemas["riskpipe.evidence.recorded.v1"]["properties"]
    assert "impact" not in schemas["riskpipe.evidence.recorded.v1"]["properties"]
    assert "impact" in schemas["riskpipe.evidence.recorded.v2"]["properties"]


def test_credentials_in_the_url_are_never_printed() -> None:
    """A password in the NATS URL is redacted from error messages."""
    runner = CliRunner(env={"RISKPIPE_NATS_URL": "nats://worker:s3cret-pw@127.0.0.1:1"})
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 1
    assert "nats://***@127.0.0.1:1" in result.stderr
    assert "s3cret-pw" not in result.output


def test_publish_refuses_anything_but_evidence(cli: CliRunner, tmp_path: Path) -> None:
    """A valid assessment or dead-letter event in the file is refused: producers send evidence."""
    cli.invoke(main, ["init"])
    forged = evidence_line("f1").replace("riskpipe.evidence.recorded.v1", "riskpipe.dlq.purged.v1")
    forged = forged.replace(
        '"data":{"pattern":"failed_login_burst","severity":"high"}',
        '"data":{"projection":"risk","dead_letter_sequence":1,"stream":"EVIDENCE","sequence":1,'
        '"actor":"mallory"}',
    )
    result = cli.invoke(main, ["publish", str(_write(tmp_path / "f.jsonl", [forged]))])
    assert result.exit_code == 1
    assert "line 1: evidence or outcomes only" in result.stderr
    assert "stored=0" in result.stdout


def _outcome_line(event_id: str, **data: object) -> str:
    fields = {"outcome": "chargeback", "positive": True, **data}
    return json.dumps(
        {
            "specversion": "1.0", "id": event_id, "source": "payments",
            "type": "riskpipe.outcome.recorded.v1", "subject": "e1", "tenant": "t1",
            "time": "2026-03-02T09:00:00+01:00", "data": fields,
        }
    )  # fmt: skip


def test_publish_takes_outcomes_beside_evidence(
    cli: CliRunner, tmp_path: Path, nats_server: NatsServer
) -> None:
    """Outcomes go to OUTCOMES once per (source, id); a bad one says why; the rest is stored."""
    cli.invoke(main, ["init"])
    lines: list[str | bytes] = [
        evidence_line("m1"),
        _outcome_line("o1", description="disputed payment"),
        _outcome_line("o1"),  # the same source and id: a duplicate
        _outcome_line("o2", outcome="benign", positive=False, observed_at="2026-03-01T20:00:00Z"),
        _outcome_line("o3", positive="yes"),
        _outcome_line("o4", outcome="Chargeback!"),
        _outcome_line("o5", extra=1),
    ]
    result = cli.invoke(main, ["publish", "--json", str(_write(tmp_path / "o.jsonl", lines))])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["duplicates"], summary["rejected"]) == (3, 1, 3)
    errors = {e["line"]: e["error"] for e in summary["errors"]}
    assert "data.positive" in errors[5]
    assert "data.outcome" in errors[6]
    assert "data.extra: Extra inputs" in errors[7]
    stored = asyncio.run(_outcomes(nats_server.url))
    assert [(e["id"], e["data"]["positive"]) for e in stored] == [("o1", True), ("o2", False)]
    # observed_at defaults to the envelope's time, kept in UTC
    assert stored[0]["data"]["observed_at"] == "2026-03-02T08:00:00Z"
    assert stored[1]["data"]["observed_at"] == "2026-03-01T20:00:00Z"


def test_publish_without_the_outcomes_stream_rejects_outcome_lines_at_once(
    cli: CliRunner, tmp_path: Path, nats_server: NatsServer
) -> None:
    """A store made before OUTCOMES existed: each outcome line says to run init; evidence is kept.

    Appended regardless, each outcome line failed only after its retries (15 s a line).
    """
    cli.invoke(main, ["init"])
    asyncio.run(_delete_stream(nats_server.url, "OUTCOMES"))
    lines: list[str | bytes] = [
        _outcome_line(f"o{i}") if i % 2 else evidence_line(f"m{i}") for i in range(40)
    ]
    started = time.monotonic()
    result = cli.invoke(main, ["publish", "--json", str(_write(tmp_path / "o.jsonl", lines))])
    assert time.monotonic() - started < 10.0
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["rejected"]) == (20, 20)
    assert {e["line"] for e in summary["errors"]} == set(range(2, 41, 2))
    assert all(
        "OUTCOMES does not exist; run `riskpipe init`" in e["error"] for e in summary["errors"]
    )


async def _delete_stream(url: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def _outcomes(url: str) -> list[dict[str, object]]:
    store = await EventStore.connect(url, schemas=build_schemas(), config=topology_config())
    async with store:
        records = [r async for r in store.read("t1", "e1", category="outcome")]
    return [r.event.to_json_dict() for r in records if r.event is not None]
