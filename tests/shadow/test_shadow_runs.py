"""Shadow runs: a proposed config scores every evidence beside live; the report compares."""

from __future__ import annotations

import asyncio
import json
import math
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from shadow_world import (
    LIVE,
    SENSITIVE,
    VERSION,
    expected,
    propose_sensitive,
    publish_world,
    run_with_shadow,
    stored,
)
from support.cli import riskpipe

from projections.risk import RiskProjection
from projections.shadow import SHADOW_ASSESSED, ShadowNotRunError, shadow_report
from riskpipe.cli import main

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore import Delivery, EventStore
    from riskpipe.server import NatsServer

pytestmark = pytest.mark.usefixtures("logging_restored")


async def test_a_shadow_run_writes_one_assessment_per_evidence_with_its_own_config(
    store: EventStore, nats_server: NatsServer
) -> None:
    """Live keeps the live fingerprint; SHADOW gets one assessment per evidence, the proposal's.

    The shadow assessments are on ``rp.shadow.<version>.<tenant>.<entity>``,
    of their own type, each entity's in evidence order; every review case was
    opened on a live assessment.
    """
    await propose_sensitive(store)
    count = await publish_world(store)
    await run_with_shadow(store, nats_server.url)

    live = await stored(store, "RISK")
    shadow = await stored(store, "SHADOW")
    assert sorted(d["evidence"]["sequence"] for _, _, d in live) == list(range(1, count + 1))
    assert sorted(d["evidence"]["sequence"] for _, _, d in shadow) == list(range(1, count + 1))
    assert {d["assessment"]["config_fingerprint"] for _, _, d in live} == {LIVE.fingerprint()}
    assert {d["assessment"]["config_fingerprint"] for _, _, d in shadow} == {
        SENSITIVE.fingerprint()
    }
    assert {t for _, t, _ in shadow} == {SHADOW_ASSESSED}
    assert {d["projection"] for _, _, d in shadow} == {f"shadow-{VERSION}"}
    by_subject: dict[str, list[int]] = {}
    for subject, _, data in shadow:
        by_subject.setdefault(subject, []).append(data["evidence"]["sequence"])
    assert set(by_subject) == {
        f"rp.shadow.{VERSION}.t1.{e}" for e in ("quiet", "mild", "warm", "busy", "hot", "other")
    }
    assert all(seqs == sorted(seqs) for seqs in by_subject.values())
    # the shadow's levels are exactly the analyzer's with the proposed config
    want = await expected(store)
    assert {d["evidence"]["sequence"]: d["assessment"]["level"] for _, _, d in shadow} == {
        s: a.level.value for s, a in want.shadow.items()
    }
    cases = [d for _, t, d in await stored(store, "REVIEW") if t == "riskpipe.review.opened.v1"]
    assert cases, "the live projection's high assessments opened cases"
    assert {c["assessment"]["stream"] for c in cases} == {"RISK"}


async def test_the_report_counts_flagged_entities_and_alerts_exactly(
    store: EventStore, nats_server: NatsServer
) -> None:
    """A more sensitive config: the report's numbers equal the analyzer's, scored directly."""
    await propose_sensitive(store)
    count = await publish_world(store)
    await run_with_shadow(store, nats_server.url)
    want = await expected(store)

    report = (await shadow_report(store, VERSION)).as_dict()
    assert report["compared"] == count
    assert report["shadow_missing"] == report["live_missing"] == 0
    assert report["levels"] == want.matrix()
    live_alerts, live_entities = want.alerts(want.live)
    shadow_alerts, shadow_entities = want.alerts(want.shadow)
    assert report["alerts"] == {
        "live_assessments": live_alerts,
        "shadow_assessments": shadow_alerts,
        "live_entities": live_entities,
        "shadow_entities": shadow_entities,
    }
    assert shadow_alerts > live_alerts, "the world must show the sensitive config's effect"
    flagged = want.flagged()
    assert flagged, "the world must have entities only the sensitive config flags"
    assert report["flagged"] == len(flagged)
    assert [e["entity"] for e in report["flagged_examples"]] == flagged[:5]
    assert report["cleared"] == len(want.cleared()) == 0
    deltas = want.deltas()
    assert deltas[-1] > 0, "the weights differ: so do some scores"
    assert report["score_delta"]["max"] == round(deltas[-1], 6)
    assert report["score_delta"]["p50"] == round(deltas[math.ceil(0.5 * len(deltas)) - 1], 6)
    assert report["score_delta"]["mean"] == round(sum(deltas) / len(deltas), 6)
    assert report["threshold"] == "high"
    assert report["shadow_fingerprints"] == {SENSITIVE.fingerprint(): count}

    # another tenant's evidence, assessed live only (no shadow run now): the shadow's lag
    more = await publish_world(store, tenant="t2", prefix="x")
    await _run_live_only(store, nats_server.url)
    lagging = (await shadow_report(store, VERSION)).as_dict()
    assert (lagging["compared"], lagging["shadow_missing"]) == (count, more)
    only_t2 = (await shadow_report(store, VERSION, tenant="t2")).as_dict()
    assert (only_t2["compared"], only_t2["shadow_missing"]) == (0, more)


async def test_the_shadow_run_prepares_its_batches_as_the_live_projection_does(
    store: EventStore, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both risk projections decode each fetched batch in one pass before handling it."""
    prepare = RiskProjection.prepare
    prepared: dict[str, int] = {}

    def counted(self: RiskProjection, deliveries: Sequence[Delivery]) -> list[object]:
        prepared[self.name] = prepared.get(self.name, 0) + len(deliveries)
        return list(prepare(self, deliveries))

    monkeypatch.setattr(RiskProjection, "prepare", counted)
    await propose_sensitive(store)
    count = await publish_world(store)
    await run_with_shadow(store, nats_server.url)
    assert set(prepared) == {"risk", f"shadow-{VERSION}"}
    assert all(n >= count for n in prepared.values()), prepared  # a redelivery comes again


async def _run_live_only(store: EventStore, url: str) -> None:
    from support.pipeline import run_worker  # noqa: PLC0415 - only this test's second run

    await run_worker(store, url)


async def test_a_version_never_run_or_never_proposed_is_said_so(
    store: EventStore, nats_server: NatsServer
) -> None:
    """The report refuses a version without shadow assessments, and names the command to run."""
    await propose_sensitive(store)
    with pytest.raises(ShadowNotRunError, match=f"riskpipe worker --shadow {VERSION}"):
        await shadow_report(store, VERSION)
    cli = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})
    never = await asyncio.to_thread(cli.invoke, main, ["shadow", "report", "--version", VERSION])
    assert never.exit_code == 1
    assert "never run in shadow" in never.output
    unknown = await asyncio.to_thread(cli.invoke, main, ["shadow", "report", "--version", "nope"])
    assert unknown.exit_code == 1
    assert "no config version 'nope' was proposed" in unknown.output
    bad = await asyncio.to_thread(cli.invoke, main, ["shadow", "report", "--version", "a.b"])
    assert bad.exit_code == 2


async def test_the_worker_refuses_an_unknown_version_in_one_line_exit_2(
    store: EventStore, nats_server: NatsServer
) -> None:
    """``worker --shadow`` of a version never proposed, or not a version name: exit 2, one line."""
    await propose_sensitive(store)
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    for version, says in (("nope", "no config version 'nope' was proposed"),
                          ("a.b", "not a config version name")):  # fmt: skip
        done = await asyncio.to_thread(
            riskpipe, "worker", "--until-idle", "--no-http", "--shadow", version, env=env
        )
        assert done.returncode == 2, done.stderr
        assert says in done.stderr
    unknown = await asyncio.to_thread(
        riskpipe, "worker", "--until-idle", "--no-http", "--shadow", "nope", env=env
    )
    errors = [json.loads(line) for line in unknown.stderr.splitlines() if '"error"' in line]
    assert [e["event"] for e in errors] == ["worker.failed"]
    assert int((await store.stream_state("SHADOW"))["messages"]) == 0


async def test_the_cli_report_prints_a_table_and_one_json_line(
    store: EventStore, nats_server: NatsServer
) -> None:
    """``riskpipe shadow report``: a human table, and with --json exactly one compact line."""
    await propose_sensitive(store)
    count = await publish_world(store)
    await run_with_shadow(store, nats_server.url)
    cli = CliRunner(env={"RISKPIPE_NATS_URL": nats_server.url, "RISKPIPE_LOG_LEVEL": "error"})
    as_json = await asyncio.to_thread(
        cli.invoke, main, ["shadow", "report", "--version", VERSION, "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    lines = as_json.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["compared"] == count
    table = await asyncio.to_thread(
        cli.invoke, main, ["shadow", "report", "--version", VERSION, "--tenant", "t1"]
    )
    assert table.exit_code == 0, table.output
    assert "alert volume (level >= high)" in table.stdout
    assert f"compared {count} evidence" in table.stdout
    assert "flagged:" in table.stdout
