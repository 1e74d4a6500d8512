"""``riskpipe demo`` (what ``make demo`` runs): the whole pipeline on a private server."""

from __future__ import annotations

import re

import pytest
from support.cli import riskpipe


@pytest.mark.slow
def test_the_demo_accounts_for_every_event_and_opens_cases() -> None:
    """Evidence, poison, the risk picture, the dead letters and the review cases, exit 0."""
    done = riskpipe("demo", "--events", "200", log_format="console")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # 200 evidence and 4 poison messages, then the learning loop's 3,000 and 300 more
    assert re.search(r"evidence=3504 assessed=3500 dead_lettered=4 pending=0", out), out
    assert "every evidence event is accounted for" in out
    assert re.search(r"learn: proposed learned-demo \(data_exfiltration=", out), out
    assert re.search(r"shadow: 3000 evidence scored by both", out), out
    since = re.search(r"the (\d+) assessments since name it in (\d+)", out)
    assert since is not None, out
    assert since.group(1) == since.group(2) == "300"
    replayed = re.search(
        r"replay: (\d+) of (\d+) assessments re-derived identically, 0 config", out
    )
    assert replayed is not None, out
    assert replayed.group(1) == replayed.group(2) == "3500"
    opened = re.search(r"review cases opened \((\d+)\)", out)
    assert opened is not None, out
    assert int(opened.group(1)) >= 1
    assert "the private server is stopped" in out


def test_the_demo_without_the_learning_loop() -> None:
    """``--no-learning``: the pipeline alone, nothing proposed or promoted."""
    done = riskpipe("demo", "--events", "50", "--no-learning", log_format="console")
    assert done.returncode == 0, done.stderr
    assert re.search(r"evidence=54 assessed=50 dead_lettered=4 pending=0", done.stdout)
    assert "learning loop" not in done.stdout
