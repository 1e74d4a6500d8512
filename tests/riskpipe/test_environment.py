"""Which ``RISKPIPE_*`` names riskpipe knows, how unknown ones are classified, how errors read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from riskpipe.environment import (
    OTHER_VARIABLES,
    describe_invalid,
    known_variables,
    unknown_variables,
)
from riskpipe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# Files that spell names wrong on purpose, and the misspellings the docs show.
DELIBERATE = {Path(__file__).resolve(), ROOT / "tests" / "riskpipe" / "test_cli_startup.py"}
DOCUMENTED_MISSPELLINGS = {"RISKPIPE_NATS_ULR"}
SCANNED = ("analyzers", "eventstore", "projections", "riskpipe", "tests", "deploy", "docs", ".ci")
NAME = re.compile(r"\bRISKPIPE_[A-Z0-9][A-Z0-9_]*[A-Z0-9]\b")


def test_every_setting_is_known() -> None:
    """Each Settings field's variable is known, so a new setting needs no second list."""
    known = known_variables()
    assert {f"RISKPIPE_{name.upper()}" for name in Settings.model_fields} <= known
    assert set(OTHER_VARIABLES) <= known


def test_every_name_the_project_uses_is_known() -> None:
    """Every RISKPIPE_* name in code, tests, deploy files, docs and CI is one riskpipe knows."""
    files = [ROOT / "Makefile", ROOT / "README.md"]
    for top in SCANNED:
        files += [p for p in (ROOT / top).rglob("*") if p.is_file()]
    used: dict[str, str] = {}
    for path in files:
        if path.resolve() in DELIBERATE or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name in NAME.findall(text):
            used.setdefault(name, str(path.relative_to(ROOT)))
    unknown = {n: where for n, where in used.items() if n not in known_variables()}
    assert set(unknown) <= DOCUMENTED_MISSPELLINGS, unknown


@pytest.mark.parametrize(
    ("name", "suggestion", "misspelt"),
    [
        ("RISKPIPE_NATS_ULR", "RISKPIPE_NATS_URL", True),
        ("RISKPIPE_LOG_LEVLE", "RISKPIPE_LOG_LEVEL", True),
        ("riskpipe_http_prot", "RISKPIPE_HTTP_PORT", True),
        ("RISKPIPE_BATCH_SIZE", "RISKPIPE_BATCH", False),
        ("RISKPIPE_IMAGE_TAG", None, False),
    ],
)
def test_unknown_names_are_classified(name: str, suggestion: str | None, misspelt: bool) -> None:  # noqa: FBT001
    """A near miss of a known name is a misspelling; a name close to none gets no suggestion."""
    [variable] = unknown_variables({name: "x", "RISKPIPE_NATS_URL": "nats://h", "PATH": "/"})
    assert (variable.name, variable.suggestion, variable.misspelt) == (name, suggestion, misspelt)


def test_known_names_match_without_regard_to_case() -> None:
    """Lower-case names are read by pydantic-settings, so they are not unknown."""
    assert unknown_variables({"riskpipe_nats_url": "nats://h", "Riskpipe_Batch": "3"}) == []


def test_invalid_values_are_named_and_never_quoted() -> None:
    """A problem names the variable (and the flag when one was given), never the value."""
    with pytest.raises(ValidationError) as raised:
        Settings(nats_url="nats://worker:s3cret@h:99999", batch="many")  # type: ignore[arg-type]
    problems = describe_invalid(raised.value, flags={"nats_url"})
    port = "'nats://***@h:99999': the port must be a number from 0 to 65535"
    assert problems == [
        f"RISKPIPE_NATS_URL or --nats-url: {port}",
        "RISKPIPE_BATCH: Input should be a valid integer, unable to parse string as an integer",
    ]
