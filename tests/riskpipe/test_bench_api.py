"""``riskpipe bench api`` runs end to end on SQLite and on PostgreSQL and reports its figures."""

from __future__ import annotations

import json

import pytest
from support.cli import riskpipe


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_bench_api_reports_latency_figures(database: str, request: pytest.FixtureRequest) -> None:
    """A small run: every request answered 200 (else it fails), the figures are consistent."""
    args = ["bench", "api", "--cases", "3000", "--tenants", "5", "--requests", "60", "--json"]
    args += ["--pipeline-events", "300", "--rate", "500"]
    if database == "postgresql":
        args += ["--database-url", request.getfixturevalue("postgres_url")]
    done = riskpipe(*args)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["database"], figures["cases"], figures["requests"]) == (database, 3000, 60)
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert figures["cpu_us_per_request"] > 0
    following = figures["pipeline"]
    assert following["evidence"] == 300
    assert following["assessed_per_second"] > 0
    assert 0 <= following["max_lag_messages"] <= 300
