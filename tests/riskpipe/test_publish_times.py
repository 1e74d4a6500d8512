"""`publish` takes only times the worker can score, to the microsecond, and stores them in UTC."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from support.cli import riskpipe

if TYPE_CHECKING:
    from riskpipe.server import NatsServer


def _line(event_id: str, time: str, **data: object) -> str:
    return json.dumps(
        {
            "id": event_id, "source": "idp", "subject": "u1", "tenant": "t1", "time": time,
            "data": {"pattern": "failed_login_burst", "severity": "high", **data},
        }
    )  # fmt: skip


HOSTILE = [
    _line("h1", "1900-01-01T00:00:00Z"),
    _line("h2", "2026-11-29T08:00:00Z", observed_at="1900-01-01T00:00:00Z"),
    _line("h3", "9999-12-31T23:59:59-05:00", observed_at="2026-11-29T08:00:00Z"),
    _line("h4", "0001-01-01T00:00:00+05:00", observed_at="2026-11-29T08:00:00Z"),
    _line("h5", "1970-01-01T00:30:00+01:00"),
    _line("h6", "2026-11-29T08:00:00.123456789Z"),
    _line("h7", "2026-11-29T08:00:00Z", observed_at="2026-11-29T07:00:00.0000001+01:00"),
    _line("h8", "2026-11-29T08:00:00Z", confidence=True),
    _line("h9", "2026-11-29T08:00:00Z", confidence="0.7"),
]
"""Lines the worker could only dead-letter, or would store other than they were written."""

ACCEPTED = [
    _line("g1", "2026-11-29T09:30:00.123456+05:30"),
    _line("g2", "1900-01-01T00:00:00Z", observed_at="1970-01-02T00:30:00+01:00"),
    _line("g3", "9999-12-31T23:59:59Z", observed_at="9999-12-31T23:59:59Z"),
]


def test_publish_refuses_what_the_worker_cannot_score_and_stores_times_in_utc(
    nats_server: NatsServer,
) -> None:
    """Each hostile line gets its own error; the rest is stored in UTC and scored, none dead."""
    env = {"RISKPIPE_NATS_URL": nats_server.url}
    assert riskpipe("init", env=env).returncode == 0
    published = riskpipe("publish", "-", env=env, stdin="\n".join(HOSTILE + ACCEPTED) + "\n")
    assert published.returncode == 1
    assert (
        published.stdout.strip() == f"stored={len(ACCEPTED)} duplicates=0 rejected={len(HOSTILE)}"
    )
    errors = [line for line in published.stderr.splitlines() if line.startswith("line ")]
    assert [e.split(":", 1)[0] for e in errors] == [f"line {n}" for n in range(1, 10)]
    assert "data.observed_at: must be in the years 1970 to 9999" in errors[0]
    assert "time: on 0001-01-01 and 9999-12-31 a time must be given in UTC" in errors[2]
    assert "has 9 fractional digits: times are kept to the microsecond" in errors[5]
    assert "has 7 fractional digits" in errors[6]
    stored = riskpipe("events", "--tenant", "t1", "--entity", "u1", "--json", env=env)
    events = [json.loads(line)["event"] for line in stored.stdout.splitlines()]
    assert [(e["time"], e["data"]["observed_at"]) for e in events] == [
        ("2026-11-29T04:00:00.123456Z", "2026-11-29T04:00:00.123456Z"),
        ("1900-01-01T00:00:00Z", "1970-01-01T23:30:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ]
    assert riskpipe("worker", "--until-idle", "--no-http", env=env).returncode == 0
    assert riskpipe("dlq", "list", "--json", env=env).stdout == ""
    status = json.loads(riskpipe("status", "--json", env=env).stdout)
    assert (status["evidence"], status["assessed"], status["dead_lettered"]) == (3, 3, 0)
