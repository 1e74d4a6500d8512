"""``riskpipe bench learn``: learn as a user runs it, timed and weighed, beside the read floor."""

from __future__ import annotations

import json

from support.cli import riskpipe


def test_bench_learn_reports_time_memory_and_the_read_floor() -> None:
    """A small history: every figure is there, and consistent with the history it stored."""
    done = riskpipe(
        "bench", "learn", "--events", "20000", "--outcomes", "800", "--entities", "2000", "--json",
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    figures = json.loads(lines[0])
    assert figures["events"] == figures["evidence_read"] == 20_000
    assert 600 <= figures["outcomes"] <= 1000  # about the outcomes asked for
    assert 0 < figures["training_examples"] < 20_000  # the holdout is left out of training
    assert figures["learn_s"] > figures["timings"]["dataset_s"] > 0
    assert figures["raw_read_s"] > 0
    assert figures["cpu_us_per_evidence"] > 0
    assert 50 < figures["peak_rss_mib"] < 4096
    assert figures["meets_target"] is (figures["learn_s"] <= figures["target_s"] == 120.0)
    assert figures["pr_auc"]["proposed"] > 0


def test_more_outcomes_than_evidence_is_refused() -> None:
    """Refused before a server starts, naming the option."""
    done = riskpipe("bench", "learn", "--events", "100", "--outcomes", "200")
    assert done.returncode == 2
    assert "--outcomes" in done.stderr
