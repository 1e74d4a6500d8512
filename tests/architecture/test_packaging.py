"""What the built wheel says about itself: typed packages and their trove classifiers."""

from __future__ import annotations

import email
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hatchling.builders.wheel import WheelBuilder

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("analyzers", "eventstore", "projections", "riskpipe")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The project's wheel, built from the source tree the way an install builds it."""
    out = tmp_path_factory.mktemp("wheel")
    [path] = WheelBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_every_package_ships_its_py_typed_marker(wheel: zipfile.ZipFile) -> None:
    """Each of the four packages carries a py.typed marker inside the wheel (PEP 561)."""
    names = set(wheel.namelist())
    assert {f"{package}/py.typed" for package in PACKAGES} <= names


def test_the_metadata_names_the_supported_pythons_and_typing(wheel: zipfile.ZipFile) -> None:
    """The wheel's metadata lists the supported Pythons, Typed, AsyncIO and a POSIX/Linux OS."""
    [meta] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = email.message_from_bytes(wheel.read(meta))
    classifiers = set(message.get_all("Classifier") or [])
    assert {
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
        "Framework :: AsyncIO",
        "Operating System :: POSIX :: Linux",
    } <= classifiers
    assert any(c.startswith("Topic :: ") for c in classifiers)
    # PEP 639: the SPDX expression is the licence; a licence classifier beside it is refused.
    assert message["License-Expression"] == "Apache-2.0"
    assert not any(c.startswith("License :: ") for c in classifiers)


def test_the_console_ships_its_templates_and_static_files(wheel: zipfile.ZipFile) -> None:
    """The web console's pages and assets are package data: an installed API serves them."""
    names = set(wheel.namelist())
    console = Path(ROOT, "riskpipe", "console")
    files = [p for p in console.rglob("*") if p.suffix in {".html", ".css", ".js"}]
    assert len(files) >= 10
    assert {str(p.relative_to(ROOT)) for p in files} <= names
