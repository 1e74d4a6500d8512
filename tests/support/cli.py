"""Running the ``riskpipe`` command line as a user does: in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import structlog

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["logging_restored", "riskpipe"]


def riskpipe(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    log_format: str = "json",
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``riskpipe ARGS`` with only ``env`` as its RISKPIPE_* environment, logs on stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKPIPE_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "riskpipe", "--log-format", log_format, *args],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Give later tests back the logging set-up that commands run in-process replace."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
