"""Running the ``riskpipe`` command line as a user does: in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import structlog

from riskpipe.cli import main

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from click.testing import CliRunner

__all__ = ["logging_restored", "provisioned_with", "riskpipe", "scored"]


def riskpipe(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    log_format: str = "json",
    prefix: tuple[str, ...] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``riskpipe ARGS`` with only ``env`` as its RISKPIPE_* environment, logs on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKPIPE_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "riskpipe", "--log-format", log_format, *args],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Give later tests back the logging set-up that commands run in-process replace."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def provisioned_with(runner: CliRunner, tmp_path: Path, lines: list[str]) -> None:
    """``riskpipe init``, then ``riskpipe publish`` of ``lines`` as one JSONL file; both succeed."""
    assert runner.invoke(main, ["init"]).exit_code == 0
    (tmp_path / "ev.jsonl").write_text("\n".join(lines) + "\n")
    published = runner.invoke(main, ["publish", str(tmp_path / "ev.jsonl")])
    assert published.exit_code == 0, published.output


def scored(runner: CliRunner) -> None:
    """``riskpipe worker --until-idle``: everything pending is handled, and it exits 0."""
    done = runner.invoke(main, ["worker", "--until-idle", "--no-http"])
    assert done.exit_code == 0, done.output
