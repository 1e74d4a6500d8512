"""The analyzer's version: bumped whenever the scoring of the same inputs changes."""

from __future__ import annotations

__all__ = ["ANALYZER_VERSION"]

ANALYZER_VERSION = "1.0.0"
