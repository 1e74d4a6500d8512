"""Dependency direction, checked on the source: analyzers <- projections -> eventstore."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def _offenders(package: str, banned: tuple[str, ...], *, allowed_in: str = "") -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path, name in _imports(package)
        if name.split(".")[0] in banned
        or any(name == b or name.startswith(b + ".") for b in banned)
        if not (allowed_in and str(path.relative_to(ROOT)).startswith(allowed_in))
    ]


@pytest.mark.parametrize(
    ("package", "banned"),
    [
        ("analyzers", ("eventstore", "projections", "riskpipe", "nats")),
        ("eventstore", ("analyzers", "projections", "riskpipe")),
        ("projections", ("riskpipe", "nats")),
    ],
)
def test_arrows_point_one_way(package: str, banned: tuple[str, ...]) -> None:
    """No package imports one that depends on it, and only eventstore talks to NATS."""
    assert _offenders(package, banned) == []


def test_nats_only_inside_the_jetstream_boundary() -> None:
    """nats-py is imported only by eventstore/_jetstream, and by no other package at all."""
    assert _offenders("eventstore", ("nats",), allowed_in="eventstore/_jetstream") == []
    assert _offenders("riskpipe", ("nats",)) == []


@pytest.mark.parametrize("package", ["analyzers", "eventstore", "projections"])
def test_libraries_only_emit_telemetry(package: str) -> None:
    """The OpenTelemetry SDK is configured in riskpipe only; libraries use the API."""
    assert _offenders(package, ("opentelemetry.sdk",)) == []


def test_the_pure_analyzer_does_no_io() -> None:
    """Outside its enrichment edge the analyzer imports no I/O, clock or logging libraries."""
    io = (
        "asyncio",
        "httpx",
        "tenacity",
        "pybreaker",
        "structlog",
        "prometheus_client",
        "socket",
        "time",
    )
    assert _offenders("analyzers", io, allowed_in="analyzers/enrichment") == []


_DOMAIN_WORDS = ("evidence", "risk", "dlq", "audit", "review", "assessment")


def _domain_literals(package: str) -> list[str]:
    """String constants in code (docstrings aside) that name one of riskpipe's streams."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        found.extend(
            f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and any(word in node.value.lower().split(".") for word in _DOMAIN_WORDS)
        )
    return found


def test_the_event_store_names_no_stream_of_riskpipe() -> None:
    """Streams are the application's to name: the store knows them by their specs only."""
    assert _domain_literals("eventstore") == []
