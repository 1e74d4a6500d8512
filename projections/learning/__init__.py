"""The learning loop: outcomes as ground truth, analyzer configs proposed and promoted."""

from typing import TYPE_CHECKING, Any

from projections.learning._book import (
    ConfigBook,
    ConfigBookError,
    ConfigConflictError,
    ConfigVersionExistsError,
    Promotion,
    Proposal,
    UnknownConfigVersionError,
    promote,
    propose,
    read_config_book,
)
from projections.learning._errors import (
    EmptyHoldoutError,
    EmptyTrainingError,
    EmptyWindowError,
    InvalidHorizonError,
    LearnError,
    NoEvidenceError,
    OneClassError,
)
from projections.learning._events import (
    CONFIG_PROMOTED,
    CONFIG_PROMOTION_STARTED,
    CONFIG_PROPOSED,
    CONFIG_SUBJECT,
    CONFIGS_STREAM,
    LEARNING_TYPES,
    OUTCOME_RECORDED,
    OUTCOMES_STREAM,
    ConfigPromotedData,
    ConfigPromotionStartedData,
    ConfigProposedData,
    ConfigVersion,
    OutcomeName,
    OutcomeRecordedData,
    TrainingWindow,
    register_learning_types,
)
from projections.learning._live import LiveConfigs, load_promoted, load_version

if TYPE_CHECKING:  # the learning API needs the learn extra (numpy, scipy): imported on use
    from projections.learning._dataset import Dataset, build_dataset, dataset_from_evidence
    from projections.learning._fit import Fit, Split, fit, split
    from projections.learning._metrics import Evaluation, average_precision, evaluate, roc_auc
    from projections.learning._world import DEFAULT_TRUE_WEIGHTS, World, make_world

_LAZY = {
    "Dataset": "_dataset",
    "build_dataset": "_dataset",
    "dataset_from_evidence": "_dataset",
    "Fit": "_fit",
    "Split": "_fit",
    "fit": "_fit",
    "split": "_fit",
    "Evaluation": "_metrics",
    "average_precision": "_metrics",
    "evaluate": "_metrics",
    "roc_auc": "_metrics",
    "DEFAULT_TRUE_WEIGHTS": "_world",
    "World": "_world",
    "make_world": "_world",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the named attribute is
    """The learning API, imported on first use: it needs ``pip install 'riskpipe[learn]'``."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415 - only when the learning API is used

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CONFIGS_STREAM",
    "CONFIG_PROMOTED",
    "CONFIG_PROMOTION_STARTED",
    "CONFIG_PROPOSED",
    "CONFIG_SUBJECT",
    "DEFAULT_TRUE_WEIGHTS",
    "LEARNING_TYPES",
    "OUTCOMES_STREAM",
    "OUTCOME_RECORDED",
    "ConfigBook",
    "ConfigBookError",
    "ConfigConflictError",
    "ConfigPromotedData",
    "ConfigPromotionStartedData",
    "ConfigProposedData",
    "ConfigVersion",
    "ConfigVersionExistsError",
    "Dataset",
    "EmptyHoldoutError",
    "EmptyTrainingError",
    "EmptyWindowError",
    "Evaluation",
    "Fit",
    "InvalidHorizonError",
    "LearnError",
    "LiveConfigs",
    "NoEvidenceError",
    "OneClassError",
    "OutcomeName",
    "OutcomeRecordedData",
    "Promotion",
    "Proposal",
    "Split",
    "TrainingWindow",
    "UnknownConfigVersionError",
    "World",
    "average_precision",
    "build_dataset",
    "dataset_from_evidence",
    "evaluate",
    "fit",
    "load_promoted",
    "load_version",
    "make_world",
    "promote",
    "propose",
    "read_config_book",
    "register_learning_types",
    "roc_auc",
    "split",
]
