"""The analyzer's version, and the earlier versions this build can still re-derive.

``ANALYZER_VERSION`` is bumped whenever the scoring of the same inputs
changes. An audit replay re-derives an assessment only with the scoring that
made it, so a bump keeps the previous scoring reachable and lists its version
in ``REDERIVABLE_VERSIONS``: an assessment from any other version cannot be
verified by this build, and a replay reports it as a failure.
"""

from __future__ import annotations

__all__ = ["ANALYZER_VERSION", "REDERIVABLE_VERSIONS"]

ANALYZER_VERSION = "1.2.0"

REDERIVABLE_VERSIONS: tuple[str, ...] = ("1.0.0", "1.1.0", ANALYZER_VERSION)
"""Every version whose assessments this build reproduces byte for byte, oldest first.

1.0.0 applied an enrichment modifier anywhere in [-1, 1]; 1.1.0 bounds it by
``enrichment_min_modifier`` and ``enrichment_max_modifier``; 1.2.0 adds the
``impact_amplification`` of v2 evidence that reports an ``impact`` (evidence
without one, every v1 event among it, scores as under 1.1.0).
"""
