"""``riskpipe demo`` (what ``make demo`` runs): the whole pipeline on a private server."""

from __future__ import annotations

import re

from support.cli import riskpipe


def test_the_demo_accounts_for_every_event_and_opens_cases() -> None:
    """Evidence, poison, the risk picture, the dead letters and the review cases, exit 0."""
    done = riskpipe("demo", "--events", "200", log_format="console")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"evidence=204 assessed=200 dead_lettered=4 pending=0", out), out
    assert "every evidence event is accounted for" in out
    opened = re.search(r"review cases opened \((\d+)\)", out)
    assert opened is not None, out
    assert int(opened.group(1)) >= 1
    assert "the private server is stopped" in out
