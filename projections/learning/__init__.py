"""The learning loop: outcomes as ground truth, analyzer configs proposed and promoted."""

from projections.learning._events import (
    CONFIG_PROMOTED,
    CONFIG_PROPOSED,
    CONFIG_SUBJECT,
    CONFIGS_STREAM,
    LEARNING_TYPES,
    OUTCOME_RECORDED,
    OUTCOMES_STREAM,
    ConfigPromotedData,
    ConfigProposedData,
    ConfigVersion,
    OutcomeName,
    OutcomeRecordedData,
    TrainingWindow,
    register_learning_types,
)

__all__ = [
    "CONFIGS_STREAM",
    "CONFIG_PROMOTED",
    "CONFIG_PROPOSED",
    "CONFIG_SUBJECT",
    "LEARNING_TYPES",
    "OUTCOMES_STREAM",
    "OUTCOME_RECORDED",
    "ConfigPromotedData",
    "ConfigProposedData",
    "ConfigVersion",
    "OutcomeName",
    "OutcomeRecordedData",
    "TrainingWindow",
    "register_learning_types",
]
