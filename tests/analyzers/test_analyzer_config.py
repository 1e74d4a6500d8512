"""Analyzer configuration: defaults, validation messages, files, fingerprints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from analyzers import (
    ANALYZER_VERSION,
    REDERIVABLE_VERSIONS,
    AnalyzerConfig,
    InvalidConfigError,
    LevelThresholds,
    SeverityWeights,
    load_config,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_the_default_config_is_valid_and_documented_values() -> None:
    """``AnalyzerConfig()`` holds the documented defaults."""
    config = AnalyzerConfig()
    assert config.analyzer_version == ANALYZER_VERSION
    assert config.half_life_seconds == 86_400.0
    assert config.thresholds.ascending() == (0.3, 0.6, 0.85)
    assert config.hysteresis_margin == 0.05
    assert config.severity_weights.by_severity() == {
        "low": 0.1,
        "medium": 0.3,
        "high": 0.6,
        "critical": 1.0,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"thresholds": {"medium": 0.7, "high": 0.6}}, "medium < high < critical"),
        ({"severity_weights": {"low": -0.1}}, "greater than or equal to 0"),
        ({"severity_weights": {"low": 0.9}}, "must not decrease with severity"),
        ({"critical_amplification": -1}, "greater than or equal to 0"),
        ({"hysteresis_margin": 0.3}, "not narrower than the high (high to critical) band"),
        ({"window_seconds": 60}, "must be at least half_life_seconds"),
        ({"half_life_seconds": 0}, "greater than 0"),
        (
            {"confidence_weights": {"volume": 0, "sources": 0, "recency": 0, "completeness": 0}},
            "at least one confidence weight",
        ),
        ({"analyzer_version": "0.9.0"}, "written for analyzer 0.9.0"),
        (
            {"thresholds": {"medium": 0.3, "high": 0.6, "critical": 0.85, "extreme": 0.9}},
            "Extra inputs are not permitted",
        ),
        ({"recommendations": {"patterns": {"Not A Pattern": ["x"]}}}, "should match pattern"),
        ({"saturation": float("nan")}, "finite number"),
        ({"enrichment_min_modifier": 0.1}, "less than or equal to 0"),
        ({"enrichment_min_modifier": -1.5}, "greater than or equal to -1"),
        ({"enrichment_max_modifier": -0.1}, "greater than or equal to 0"),
        ({"analyzer_version": "1.0.0"}, "written for analyzer 1.0.0"),
    ],
)
def test_invalid_configs_are_rejected_with_a_clear_message(
    fields: dict[str, object], message: str
) -> None:
    """Out-of-order thresholds, negative weights, a too-wide margin and friends fail to load."""
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AnalyzerConfig.model_validate(fields)


def test_config_errors_are_value_errors() -> None:
    """Validation failures can be caught as ``ValueError``."""
    with pytest.raises(ValueError, match="medium < high < critical"):
        LevelThresholds(medium=0.9, high=0.6, critical=0.95)
    with pytest.raises(ValueError, match="must not decrease"):
        SeverityWeights(critical=0.0)


def test_a_copy_is_validated_and_re_derives_its_tables() -> None:
    """``model_copy(update=...)`` validates and the copy scores with its own values."""
    config = AnalyzerConfig()
    slower = config.model_copy(update={"half_life_seconds": 7 * 86_400.0})
    assert slower.tables.half_life == 7 * 86_400.0
    assert slower.fingerprint() != config.fingerprint()
    with pytest.raises(ValidationError):
        config.model_copy(update={"hysteresis_margin": 0.5})


TOML = """
half_life_seconds = 43200
hysteresis_margin = 0.04

[thresholds]
medium = 0.25
high = 0.55
critical = 0.8

[severity_weights]
high = 0.7

[recommendations.levels]
critical = ["Page the fraud team."]

[recommendations.patterns]
card_testing = ["Block the card and notify the issuer."]
"""

YAML = """
half_life_seconds: 43200.0
hysteresis_margin: 0.04
thresholds: {medium: 0.25, high: 0.55, critical: 0.8}
severity_weights:
  high: 0.7
recommendations:
  levels:
    critical: ["Page the fraud team."]
  patterns:
    card_testing: ["Block the card and notify the issuer."]
"""


def test_toml_and_yaml_load_to_the_same_config_and_fingerprint(tmp_path: Path) -> None:
    """The same settings in TOML and YAML give equal configs with equal fingerprints."""
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "a.yaml").write_text(YAML)
    from_toml = load_config(tmp_path / "a.toml")
    from_yaml = load_config(tmp_path / "a.yaml")
    assert from_toml == from_yaml
    assert from_toml.fingerprint() == from_yaml.fingerprint()
    assert from_toml.severity_weights.medium == 0.3
    assert from_toml.recommendations.levels.low == AnalyzerConfig().recommendations.levels.low
    assert from_toml.recommendations.patterns == {
        "card_testing": ("Block the card and notify the issuer.",)
    }


def test_the_fingerprint_is_stable_and_sensitive() -> None:
    """Equal configs share a fingerprint, any change moves it, and it is a SHA-256 hex."""
    config = AnalyzerConfig()
    assert (
        config.fingerprint()
        == AnalyzerConfig.model_validate_json(config.model_dump_json()).fingerprint()
    )
    assert config.fingerprint() == AnalyzerConfig(half_life_seconds=86_400).fingerprint()
    assert config.fingerprint() != AnalyzerConfig(diversity_bonus=0.2).fingerprint()
    assert len(config.fingerprint()) == 64
    assert int(config.fingerprint(), 16) >= 0


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.toml", "half_life_seconds = ", "not valid TOML"),
        ("bad.yaml", "thresholds: [unclosed", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "top level must be a table"),
        ("config.json", "{}", "use a .toml, .yaml or .yml file"),
        ("margin.toml", "hysteresis_margin = 0.3", "config: hysteresis_margin 0.3 is not narrower"),
        ("unknown.toml", "half_lfe_seconds = 10", "half_lfe_seconds: Extra inputs"),
    ],
)
def test_bad_config_files_raise_invalid_config_error(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    """Unreadable, malformed or invalid files raise InvalidConfigError naming the file."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidConfigError, match=message) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert isinstance(caught.value, ValueError)


def test_a_missing_config_file_raises_invalid_config_error(tmp_path: Path) -> None:
    """A path that does not exist is reported as an unreadable config."""
    with pytest.raises(InvalidConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.toml")


V1_0_0_DEFAULT = "b7f1f2e48d426ddffafc1f30afc2e2d0515021c7d8dbfaaa4f29a1bc6bf8b2fb"
"""The fingerprint analyzer 1.0.0 recorded for its default config."""
V1_1_0_DEFAULT = "8ee5a7fd36cfe3d76b6b358531384b04859f7c41d41eaf770c0cf9b810f981f3"
"""The fingerprint analyzer 1.1.0 recorded for its default config."""


def test_a_config_for_an_earlier_version_scores_and_fingerprints_as_that_version() -> None:
    """``for_version('1.0.0')``: 1.0.0's fingerprint, unbounded modifiers, stamped 1.0.0.

    A setting 1.0.0 did not have leaves its fingerprint alone.
    """
    assert REDERIVABLE_VERSIONS == ("1.0.0", "1.1.0", ANALYZER_VERSION)
    config = AnalyzerConfig()
    old = config.for_version("1.0.0")
    assert old.fingerprint() == V1_0_0_DEFAULT
    assert old.fingerprint() != config.fingerprint()
    assert "enrichment_min_modifier" not in old.canonical_json()
    assert (old.tables.version, old.tables.modifier_bounds) == ("1.0.0", (-1.0, 1.0))
    assert config.for_version(ANALYZER_VERSION) is config
    tuned = config.model_copy(update={"enrichment_min_modifier": -0.2, "half_life_seconds": 3600})
    same_for_1_0_0 = AnalyzerConfig(half_life_seconds=3600).for_version("1.0.0")
    assert tuned.for_version("1.0.0").fingerprint() == same_for_1_0_0.fingerprint()
    with pytest.raises(ValueError, match=r"analyzer 0\.9\.0 cannot be re-derived"):
        config.for_version("0.9.0")


def test_a_config_for_1_1_0_has_its_fingerprint_and_ignores_impact() -> None:
    """1.1.0 had no ``impact_amplification``: left out of its fingerprint, scored as 0."""
    config = AnalyzerConfig()
    old = config.for_version("1.1.0")
    assert old.fingerprint() == V1_1_0_DEFAULT
    assert "impact_amplification" not in old.canonical_json()
    assert "impact_amplification" in config.canonical_json()
    assert (old.tables.version, old.tables.impact_amplification) == ("1.1.0", 0.0)
    assert config.tables.impact_amplification == 1.0


V1_2_0_DEFAULT = "ac9c1d8f409d5fa9035de558535c3b379d4e45c07a331d8040933ed45571dcd5"


def test_pattern_weights_left_empty_keep_the_fingerprint() -> None:
    """No pattern weights: the fingerprint of before they existed; any weight moves it."""
    config = AnalyzerConfig()
    assert config.fingerprint() == V1_2_0_DEFAULT
    assert "pattern_weights" not in config.canonical_json()
    weighted = AnalyzerConfig(pattern_weights={"odd_hours": 0.5})
    assert '"pattern_weights":{"odd_hours":0.5}' in weighted.canonical_json()
    assert weighted.fingerprint() != config.fingerprint()
    assert AnalyzerConfig.model_validate(weighted.model_dump()).fingerprint() == (
        weighted.fingerprint()
    )


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"odd_hours": -0.1}, "greater than or equal to 0"),
        ({"odd_hours": 101.0}, "less than or equal to 100"),
        ({"Odd-Hours": 1.0}, "should match pattern"),
    ],
)
def test_pattern_weights_are_bounded_and_named_as_patterns(
    weights: dict[str, float], problem: str
) -> None:
    """A negative or huge weight, or a key that is no pattern name, is refused."""
    with pytest.raises(ValidationError, match=problem):
        AnalyzerConfig(pattern_weights=weights)
