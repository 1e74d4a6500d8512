"""Chaos, proven: faults injected into real processes, invariants checked over the history.

A run records every operation, fault and observation as JSON lines
(:mod:`riskpipe.chaos._history`), reads back what the streams hold once
healed (:class:`FinalState`), and checks every invariant over both
(:func:`check`). See docs/reliability.md.
"""

from riskpipe.chaos._final import Effect, FinalState, StoredEvidence
from riskpipe.chaos._harness import ChaosOptions, ChaosResult, run_chaos
from riskpipe.chaos._history import (
    APPEND,
    CHECKPOINT,
    FAULT,
    HEAL,
    PROBE,
    RECOVERED,
    REDELIVERY,
    Expect,
    HistoryWriter,
    Op,
    OpType,
    parse_history,
    read_history,
)
from riskpipe.chaos._invariants import INVARIANTS, RECOVERY_LIMIT, Report, Violation, check
from riskpipe.chaos._plan import (
    CLUSTER_ONLY,
    SCENARIOS,
    PlannedFault,
    Scenario,
    Timing,
    plan_faults,
)
from riskpipe.chaos._reading import read_final
from riskpipe.chaos.errors import ChaosError, HistoryError

__all__ = [
    "APPEND",
    "CHECKPOINT",
    "CLUSTER_ONLY",
    "FAULT",
    "HEAL",
    "INVARIANTS",
    "PROBE",
    "RECOVERED",
    "RECOVERY_LIMIT",
    "REDELIVERY",
    "SCENARIOS",
    "ChaosError",
    "ChaosOptions",
    "ChaosResult",
    "Effect",
    "Expect",
    "FinalState",
    "HistoryError",
    "HistoryWriter",
    "Op",
    "OpType",
    "PlannedFault",
    "Report",
    "Scenario",
    "StoredEvidence",
    "Timing",
    "Violation",
    "check",
    "parse_history",
    "plan_faults",
    "read_final",
    "read_history",
    "run_chaos",
]
