"""Durations in settings read the way operators write them."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from pydantic import ValidationError
from support.cli import riskpipe

from riskpipe.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("3600", timedelta(hours=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1w", timedelta(days=7)),
        ("PT2H", timedelta(hours=2)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_the_duplicate_window_reads_friendly_durations(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta
) -> None:
    """RISKPIPE_DUPLICATE_WINDOW takes seconds, a number with a unit, or ISO 8601."""
    monkeypatch.setenv("RISKPIPE_DUPLICATE_WINDOW", text)
    assert Settings().duplicate_window == expected


@pytest.mark.parametrize("text", ["2x", "h", "", "2h 3", "30s"])
def test_a_bad_or_too_short_duplicate_window_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Text that is not a duration, or a window under a minute, is refused."""
    monkeypatch.setenv("RISKPIPE_DUPLICATE_WINDOW", text)
    with pytest.raises(ValidationError, match="duplicate_window"):
        Settings()


def test_the_cli_names_the_bad_duration() -> None:
    """A command started with a bad window says which variable is wrong, and how to write it."""
    result = riskpipe("status", env={"RISKPIPE_DUPLICATE_WINDOW": "two hours"})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    error = orjson.loads(line)["error"]
    assert error.startswith("RISKPIPE_DUPLICATE_WINDOW: ")
    assert "7d" in error
