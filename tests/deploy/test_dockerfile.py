"""deploy/Dockerfile and .dockerignore, read as text: no Docker engine is needed to check them."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    args: str


def parse(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage, in order (comments and blank lines dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[Instruction]] = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, args = line.strip().partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def only(stage: list[Instruction], keyword: str) -> Instruction:
    """The stage's single instruction of a kind."""
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    """The parsed build stages of deploy/Dockerfile."""
    return parse(DOCKERFILE.read_text())


def test_build_is_multi_stage_and_ships_only_the_venv(stages: list[list[Instruction]]) -> None:
    """A builder stage makes the wheel; the runtime copies only its virtualenv from it."""
    builder, runtime = stages
    assert only(builder, "FROM").args.endswith("AS builder")
    assert "pip wheel" in only(builder, "RUN").args
    copies = [i.args for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_both_stages_use_the_same_slim_python_311(stages: list[list[Instruction]]) -> None:
    """The venv is built and run on the same slim Python 3.11, so its interpreter link holds."""
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert [only(stage, "FROM").args.split()[0] for stage in stages] == ["${PYTHON_IMAGE}"] * 2


def test_runtime_runs_as_a_non_root_user(stages: list[list[Instruction]]) -> None:
    """The runtime stage switches to a numeric non-zero uid and gid before the entrypoint."""
    runtime = stages[-1]
    user = only(runtime, "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert gid.isdigit(), user
    assert int(uid) != 0
    assert int(gid) != 0
    keywords = [i.keyword for i in runtime]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_entrypoint_is_riskpipe_and_the_default_command_the_worker(
    stages: list[list[Instruction]],
) -> None:
    """``ENTRYPOINT ["riskpipe"]`` in exec form, with ``worker`` as the default command."""
    runtime = stages[-1]
    assert json.loads(only(runtime, "ENTRYPOINT").args) == ["riskpipe"]
    assert json.loads(only(runtime, "CMD").args) == ["worker"]


def test_healthcheck_asks_the_worker_healthz_on_9464(stages: list[list[Instruction]]) -> None:
    """The health check requests /healthz on the worker's HTTP port, 9464 by default."""
    runtime = stages[-1]
    check = only(runtime, "HEALTHCHECK").args
    command = json.loads(check[check.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert "'RISKPIPE_HTTP_PORT', '9464'" in command[2]
    assert only(runtime, "EXPOSE").args == "9464"
    assert "RISKPIPE_HTTP_PORT=9464" in only(runtime, "ENV").args
    compile(command[2], "<healthcheck>", "exec")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether docker leaves ``path`` out of the build context (last matching rule wins)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        rule = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, rule) for candidate in candidates):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    """The rules of the root .dockerignore."""
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_everything_the_builder_copies_is_in_the_context(
    stages: list[list[Instruction]], ignore_patterns: list[str]
) -> None:
    """Each COPY source of the builder exists and is not excluded by .dockerignore."""
    sources = [i.args.split()[:-1] for i in stages[0] if i.keyword == "COPY"]
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
        assert not dockerignored(source, ignore_patterns), source
        if (ROOT / source).is_dir():
            assert not dockerignored(f"{source}/__init__.py", ignore_patterns), source


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".git/config", "deploy/.env", "tests/conftest.py", ".riskpipe/x"],
)
def test_dockerignore_keeps_local_state_out_of_the_context(
    path: str, ignore_patterns: list[str]
) -> None:
    """Virtualenvs, git history, local data, tests and any .env never reach the daemon."""
    assert dockerignored(path, ignore_patterns)


def test_dockerignore_drops_bytecode_inside_the_packages(ignore_patterns: list[str]) -> None:
    """Compiled caches inside an included package are still left out."""
    assert dockerignored("riskpipe/__pycache__/cli.cpython-311.pyc", ignore_patterns)
    assert not dockerignored("riskpipe/cli/__init__.py", ignore_patterns)
