"""The switch between skipping and failing tests whose command-line tool is missing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.tools import REQUIRE_TOOLS, require_tool

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def path_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH of one empty directory, where a test puts the tools it wants found."""
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_a_present_tool_is_found_whatever_the_switch(
    path_with: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool on PATH is returned by path, with the switch on or off."""
    tool = path_with / "openssl"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    for value in ("", "0", "1"):
        monkeypatch.setenv(REQUIRE_TOOLS, value)
        assert require_tool("openssl") == str(tool)


@pytest.mark.usefixtures("path_with")
@pytest.mark.parametrize("value", [None, "", "0"])
def test_a_missing_tool_skips_with_how_to_install_it(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the switch, a missing tool skips the test with one line naming the package."""
    if value is None:
        monkeypatch.delenv(REQUIRE_TOOLS, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_TOOLS, value)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tool("promtool")
    assert str(skipped.value) == "promtool is missing: apt-get install prometheus"


@pytest.mark.usefixtures("path_with")
def test_the_switch_turns_a_missing_tool_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """With RISKPIPE_REQUIRE_TOOLS=1 a missing tool fails the test, as CI needs."""
    monkeypatch.setenv(REQUIRE_TOOLS, "1")
    with pytest.raises(pytest.fail.Exception, match=r"^openssl is missing: apt-get install"):
        require_tool("openssl")


@pytest.mark.usefixtures("path_with")
@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_a_misspelt_switch_fails_rather_than_skips(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A switch other than 0 or 1 fails the test: a typo never turns CI's checks into skips."""
    monkeypatch.setenv(REQUIRE_TOOLS, value)
    with pytest.raises(pytest.fail.Exception, match="must be 0 or 1"):
        require_tool("pgrep")


def test_every_tool_a_test_runs_is_listed() -> None:
    """Asking for a tool not in the list is an error, so each one has its install line."""
    with pytest.raises(KeyError):
        require_tool("docker")


def _bare_commands(path: Path) -> list[str]:
    """Where ``path`` runs a command by a literal name, or looks one up with ``shutil.which``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        literal = (
            node.args
            and isinstance(node.args[0], ast.List | ast.Tuple)
            and node.args[0].elts
            and isinstance(node.args[0].elts[0], ast.Constant)
        )
        if name == "shutil.which" or (name.startswith("subprocess.") and literal):
            found.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    return found


def test_every_test_finds_its_tools_through_the_switch() -> None:
    """No test runs a command by a bare name or finds one itself: all go through require_tool."""
    own = TESTS / "support" / "tools.py"
    offenders = [
        hit for path in sorted(TESTS.rglob("*.py")) if path != own for hit in _bare_commands(path)
    ]
    assert offenders == []
