"""Loading an :class:`AnalyzerConfig` from a TOML or YAML file."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from analyzers._config import AnalyzerConfig
from analyzers._problems import describe
from analyzers.errors import InvalidConfigError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["load_config"]

_TOML = (".toml",)
_YAML = (".yaml", ".yml")


def load_config(path: Path) -> AnalyzerConfig:
    """Read and validate the analyzer config in ``path`` (``.toml``, ``.yaml`` or ``.yml``).

    Keys left out keep their defaults.

    Raises:
        InvalidConfigError: the file cannot be read or parsed, or the config is invalid.
    """
    raw = _read(path)
    try:
        return AnalyzerConfig.model_validate(raw)
    except ValidationError as exc:
        raise InvalidConfigError(str(path), describe(exc, whole="config")) from exc


def _read(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in _TOML + _YAML:
        raise InvalidConfigError(str(path), ["use a .toml, .yaml or .yml file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(str(path), [f"cannot read the file: {exc}"]) from exc
    raw = _parse_toml(path, text) if suffix in _TOML else _parse_yaml(path, text)
    if not isinstance(raw, dict):
        raise InvalidConfigError(str(path), ["the top level must be a table of settings"])
    return raw


def _parse_toml(path: Path, text: str) -> Any:  # noqa: ANN401 - parsed data is checked by the caller
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfigError(str(path), [f"not valid TOML: {exc}"]) from exc


def _parse_yaml(path: Path, text: str) -> Any:  # noqa: ANN401 - parsed data is checked by the caller
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidConfigError(str(path), [f"not valid YAML: {exc}"]) from exc
