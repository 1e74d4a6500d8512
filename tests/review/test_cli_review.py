"""``riskpipe review``: list, show and act on cases from a terminal or a script."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from support.cli import riskpipe
from support.events import evidence
from support.pipeline import run_worker

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from riskpipe.server import NatsServer


async def _risky(store: EventStore, url: str, *entities: str) -> None:
    for entity in entities:
        for n in range(4):
            await store.append(
                evidence(f"{entity}-{n}", entity=entity, severity="critical", minute=n)
            )
    await run_worker(store, url)


@pytest.mark.slow
async def test_list_show_decide_from_the_command_line(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A script lists open cases, reads one, assigns and decides it, and sees it decided."""
    await _risky(store, nats_server.url, "e1", "e2")
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_ACTOR": "ana"}
    listed = riskpipe("review", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    cases = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(case["case"] for case in cases) == ["t1.e1.1", "t1.e2.1"]
    assert {case["status"] for case in cases} == {"open"}
    shown = riskpipe("review", "show", "t1", "e1", env=env)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["timeline"][0]["type"] == "riskpipe.review.opened.v1"
    assert body["assessments"][0]["sequence"] == body["assessment"]["sequence"]
    assert riskpipe("review", "assign", "t1", "e1", "ana", env=env).returncode == 0
    decided = riskpipe(
        "review", "decide", "t1", "e1", "--outcome", "confirmed", "--reason", "real takeover",
        env=env,
    )  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    after = json.loads(decided.stdout)
    assert after["status"] == "decided"
    assert after["decision"]["by"] == {"name": "ana", "role": "reviewer"}
    still_open = riskpipe("review", "list", "--json", env=env).stdout.splitlines()
    assert [json.loads(line)["case"] for line in still_open] == ["t1.e2.1"]
    every = riskpipe("review", "list", "--status", "all", "--tenant", "t1", "--json", env=env)
    assert len(every.stdout.splitlines()) == 2


@pytest.mark.slow
async def test_refusals_exit_1_with_the_reason_and_write_nothing(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A stale --if-version, deciding twice, an unknown case, a bad outcome, a blank reason."""
    await _risky(store, nats_server.url, "e1")
    env = {"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_ACTOR": "bob"}
    version = json.loads(riskpipe("review", "show", "t1", "e1", env=env).stdout)["version"]
    stale = riskpipe(
        "review", "decide", "t1", "e1", "--outcome", "confirmed", "--reason", "x",
        "--if-version", str(version - 1), env=env,
    )  # fmt: skip
    assert stale.returncode == 1
    assert f"is at version {version}, not {version - 1}" in stale.stderr
    unknown = riskpipe("review", "show", "t1", "nobody", env=env)
    assert unknown.returncode == 1
    assert "no case for entity nobody of tenant t1" in unknown.stderr
    blank = riskpipe(
        "review", "decide", "t1", "e1", "--outcome", "confirmed", "--reason", "  ", env=env
    )
    assert blank.returncode == 1
    assert "reason" in blank.stderr
    bad = riskpipe("review", "decide", "t1", "e1", "--outcome", "maybe", "--reason", "x", env=env)
    assert bad.returncode == 2
    hostile = riskpipe(
        "review", "decide", "t1", "e.1", "--outcome", "confirmed", "--reason", "x", env=env
    )
    assert hostile.returncode == 2
    assert "entity" in hostile.stderr
    assert json.loads(riskpipe("review", "show", "t1", "e1", env=env).stdout)["version"] == version


def test_check_policy_names_every_problem(tmp_path: Path) -> None:
    """A policy file with two mistakes: both named, exit 1; a good one prints with defaults."""
    bad = tmp_path / "policy.toml"
    bad.write_text('open_at = "severe"\nrecheck_after_days = -1\n')
    checked = riskpipe("review", "check-policy", str(bad))
    assert checked.returncode == 1
    assert "invalid review policy" in checked.stderr
    assert "open_at" in checked.stderr
    assert "recheck_after_days" in checked.stderr
    good = tmp_path / "policy.yaml"
    good.write_text("version: '2024-06'\nopen_at: critical\n")
    shown = riskpipe("review", "check-policy", str(good))
    assert shown.returncode == 0, shown.stderr
    policy = json.loads(shown.stdout)
    assert (policy["version"], policy["open_at"], policy["open_on_degraded"]) == (
        "2024-06", "critical", True,
    )  # fmt: skip
