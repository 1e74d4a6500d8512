"""Command-line tools outside Python that some tests run: skipped where missing, unless required.

A machine with only Python 3.11+ runs the whole suite, and the tests that need
``promtool``, ``openssl`` or ``pgrep`` are skipped there with one line saying
how to get the tool. CI installs the tools and sets ``RISKPIPE_REQUIRE_TOOLS=1``,
under which a missing tool fails the test instead, so those tests always run
there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = ["REQUIRE_TOOLS", "TOOLS", "postgres_bindir", "require_tool", "tools_required"]

REQUIRE_TOOLS = "RISKPIPE_REQUIRE_TOOLS"
"""The switch: ``1`` turns a missing tool into a failure, ``0`` or unset into a skip."""

TOOLS = {
    "promtool": "apt-get install prometheus",
    "openssl": "apt-get install openssl",
    "pgrep": "apt-get install procps",
    "setpriv": "apt-get install util-linux",
    "bash": "apt-get install bash",
    "npm": "apt-get install npm",
    "pg_ctl": "apt-get install postgresql",
    "chromium": "apt-get install chromium",
    "chromedriver": "apt-get install chromium-driver",
}
"""Every tool a test may run, with how to install it on Debian (what ``.ci/run`` does)."""


def tools_required() -> bool:
    """Whether a missing tool fails the test, from ``RISKPIPE_REQUIRE_TOOLS``.

    A value other than ``0``, ``1`` or empty fails the test: a typo must not
    quietly turn CI's checks into skips.
    """
    value = os.environ.get(REQUIRE_TOOLS, "").strip()
    if value not in {"", "0", "1"}:
        pytest.fail(f"{REQUIRE_TOOLS} must be 0 or 1, not {value!r}", pytrace=False)
    return value == "1"


def require_tool(name: str) -> str:
    """The path of the command ``name``, or skip the test (fail it under the switch).

    Raises:
        KeyError: ``name`` is not in :data:`TOOLS` (every tool a test runs is listed there).
    """
    install = TOOLS[name]
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is missing: {install}"
    if tools_required():
        pytest.fail(f"{reason} ({REQUIRE_TOOLS}=1 requires every tool)", pytrace=False)
    pytest.skip(reason)


_DEBIAN_POSTGRES = Path("/usr/lib/postgresql")


def postgres_bindir() -> Path:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``, ``postgres``).

    Debian keeps them off PATH, in ``/usr/lib/postgresql/<major>/bin``: the
    newest there is used, else the one on PATH. Skipped (failed under the
    switch) when there is none.
    """
    versions = sorted(
        (p for p in _DEBIAN_POSTGRES.glob("*/bin") if (p / "pg_ctl").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdecimal() else 0,
    )
    if versions:
        return versions[-1]
    return Path(require_tool("pg_ctl")).parent
