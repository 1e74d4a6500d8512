"""The analyzer's dependency rules, checked on its own source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "analyzers"
PURE_ALLOWED = {"analyzers", "pydantic", "pydantic_core", "yaml", "tomllib"}
EDGE_ONLY = {"httpx", "tenacity", "pybreaker", "structlog", "prometheus_client"}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def sources() -> list[Path]:
    """Every Python file of the analyzers package."""
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_imports_nats(path: Path) -> None:
    """Nothing in analyzers imports nats."""
    assert "nats" not in imported_roots(path)


@pytest.mark.parametrize(
    "path",
    [path for path in sources() if "enrichment" not in path.parts],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_the_pure_core_imports_only_stdlib_and_pydantic(path: Path) -> None:
    """Outside the enrichment edge, imports are stdlib, pydantic and the config parsers."""
    foreign = imported_roots(path) - PURE_ALLOWED - sys.stdlib_module_names
    assert not foreign
    assert "asyncio" not in imported_roots(path)
    assert not imported_roots(path) & EDGE_ONLY
