"""Field-by-field comparison: the first differing path and both values, as strict as JSON text."""

from __future__ import annotations

from projections.audit import ABSENT, first_difference


def test_equal_values_have_no_difference() -> None:
    """Identical nested values compare equal."""
    value = {"a": 1, "b": {"c": [1.5, "x"], "d": None}}
    assert first_difference(value, {"b": {"d": None, "c": [1.5, "x"]}, "a": 1}) is None


def test_first_difference_names_the_path_and_both_values() -> None:
    """The first differing leaf is reported with its dotted path, in the recorded field order."""
    recorded = {"assessment": {"score": 0.4, "level": "medium"}, "state": {"level": "medium"}}
    rederived = {"assessment": {"score": 0.9, "level": "high"}, "state": {"level": "high"}}
    found = first_difference(recorded, rederived)
    assert found is not None
    assert (found.path, found.recorded, found.rederived) == ("assessment.score", 0.4, 0.9)
    assert found.describe() == "assessment.score: recorded 0.4, re-derived 0.9"


def test_numbers_differ_as_their_json_text_would() -> None:
    """1 and 1.0, and 0.0 and -0.0, differ although Python calls them equal."""
    assert first_difference({"x": 1}, {"x": 1.0}) is not None
    assert first_difference({"x": 0.0}, {"x": -0.0}) is not None
    assert first_difference({"x": True}, {"x": 1}) is not None


def test_missing_keys_and_list_items_are_differences() -> None:
    """A key or list item present on one side only is shown as absent on the other."""
    found = first_difference({"a": 1}, {"a": 1, "b": 2})
    assert found is not None
    assert (found.path, found.recorded, found.rederived) == ("b", ABSENT, 2)
    found = first_difference({"r": ["x", "y"]}, {"r": ["x"]})
    assert found is not None
    assert (found.path, found.recorded, found.rederived) == ("r[1]", "y", ABSENT)
