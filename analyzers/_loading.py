"""Loading an :class:`AnalyzerConfig` from a TOML or YAML file."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from analyzers._config import AnalyzerConfig
from analyzers._problems import describe
from analyzers.errors import InvalidConfigError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["load_config", "load_settings_file"]

_M = TypeVar("_M", bound=BaseModel)
_TOML = (".toml",)
_YAML = (".yaml", ".yml")


def load_config(path: Path) -> AnalyzerConfig:
    """Read and validate the analyzer config in ``path`` (``.toml``, ``.yaml`` or ``.yml``).

    Keys left out keep their defaults.

    Raises:
        InvalidConfigError: the file cannot be read or parsed, or the config is invalid.
    """
    return load_settings_file(path, AnalyzerConfig, what="analyzer config")


def load_settings_file(path: Path, model: type[_M], *, what: str) -> _M:
    """Read ``path`` (``.toml``, ``.yaml`` or ``.yml``) and validate it as ``model``.

    Raises:
        InvalidConfigError: the file cannot be read or parsed, or is not a
            valid ``model``; its message names ``what`` and every problem.
    """
    raw = _read(path, what)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidConfigError(str(path), describe(exc, whole="config"), what=what) from exc


def _read(path: Path, what: str) -> dict[str, Any]:
    def invalid(problem: str) -> InvalidConfigError:
        return InvalidConfigError(str(path), [problem], what=what)

    suffix = path.suffix.lower()
    if suffix not in _TOML + _YAML:
        raise invalid("use a .toml, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid(f"cannot read the file: {exc}") from exc
    try:
        raw = tomllib.loads(text) if suffix in _TOML else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise invalid(f"not valid TOML: {exc}") from exc
    except yaml.YAMLError as exc:
        raise invalid(f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise invalid("the top level must be a table of settings")
    return raw
