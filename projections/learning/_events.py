"""The events of the learning loop: outcomes, and analyzer configs proposed and promoted.

Outcomes are ground truth about an entity, recorded by producers on
``<prefix>.outcome.<tenant>.<entity>`` (the ``OUTCOMES`` stream): what really
happened, to be compared with what the analyzer said. Config events live on
one subject, ``<prefix>.config.riskpipe.risk`` (the ``CONFIGS`` stream), so that
one fence orders every promotion: of two operators promoting at once, one wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    model_validator,
)

from analyzers import ObservedTime, observed_or_event_time
from eventstore import StreamSpec
from projections.review import Actor

if TYPE_CHECKING:
    from eventstore import EventSchemas

__all__ = [
    "CONFIGS_STREAM",
    "CONFIG_PROMOTED",
    "CONFIG_PROMOTION_STARTED",
    "CONFIG_PROPOSED",
    "CONFIG_SUBJECT",
    "LEARNING_TYPES",
    "OUTCOMES_STREAM",
    "OUTCOME_RECORDED",
    "ConfigPromotedData",
    "ConfigPromotionStartedData",
    "ConfigProposedData",
    "ConfigVersion",
    "OutcomeName",
    "OutcomeRecordedData",
    "TrainingWindow",
    "register_learning_types",
]

OUTCOME_RECORDED = "riskpipe.outcome.recorded.v1"
CONFIG_PROPOSED = "riskpipe.analyzer.config.proposed.v1"
CONFIG_PROMOTED = "riskpipe.analyzer.config.promoted.v1"
CONFIG_PROMOTION_STARTED = "riskpipe.analyzer.config.promotion_started.v1"

OUTCOMES_STREAM = StreamSpec(category="outcome", name="OUTCOMES")
"""Ground truth about entities on ``<prefix>.outcome.<tenant>.<entity>``, immutable."""
CONFIGS_STREAM = StreamSpec(category="config", name="CONFIGS")
"""Analyzer configs proposed and promoted, on :data:`CONFIG_SUBJECT`, immutable."""
CONFIG_SUBJECT = ("riskpipe", "risk")
"""The tenant and entity tokens of every config event: the risk projection's analyzer."""

OutcomeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""What happened, as a lowercase token: ``fraud_confirmed``, ``chargeback``, ``benign``."""
ConfigVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
"""The name of a config version, e.g. ``2026-12-06-1`` or ``learned-3``: a subject token too."""
_Fingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000, pattern=r"\S")
]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class OutcomeRecordedData(_Data):
    """``riskpipe.outcome.recorded.v1``: what really happened to the entity (its subject).

    ``positive`` is true when the outcome confirms risk (fraud, a chargeback,
    an account takeover) and false when it clears it (``benign``).
    ``observed_at`` defaults to the envelope's ``time``.
    """

    outcome: OutcomeName
    positive: bool = Field(strict=True)
    observed_at: ObservedTime | None = None
    description: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _observed_defaults_to_event_time(cls, data: Any, info: ValidationInfo) -> Any:  # noqa: ANN401 - pydantic hook
        return observed_or_event_time(data, info)


class TrainingWindow(_Data):
    """What a learned config was fitted on: the assessments' times and the label horizon."""

    since: ObservedTime
    until: ObservedTime
    horizon_seconds: float = Field(gt=0.0)
    cut: ObservedTime | None = None
    """The holdout's start: nothing observed after it reached the fit."""
    examples: int = Field(ge=0)
    positives: int = Field(ge=0)


class ConfigProposedData(_Data):
    """``riskpipe.analyzer.config.proposed.v1``: a config version that may be promoted.

    ``config`` is the whole analyzer config as JSON, so that anyone can score
    with it later (a replay included); ``fingerprint`` is its
    :meth:`analyzers.AnalyzerConfig.fingerprint`. ``training`` and ``metrics``
    say how it was learned and how it did on held-out data (left out for a
    config written by hand).
    """

    version: ConfigVersion
    analyzer_version: str
    fingerprint: _Fingerprint
    config: dict[str, Any]
    training: TrainingWindow | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    reason: _Text | None = None
    by: Actor


class ConfigPromotedData(_Data):
    """``riskpipe.analyzer.config.promoted.v1``: from ``effective_from`` on, score with ``version``.

    ``effective_from`` is an evidence stream sequence: every evidence event at
    or after it is scored with this config, every earlier one with the config
    promoted before (or the worker's own, before any promotion). A rollback
    is a promotion of an earlier version, marked as such.
    """

    version: ConfigVersion
    fingerprint: _Fingerprint
    previous: ConfigVersion | None = None
    effective_from: int = Field(ge=1)
    kind: Literal["promotion", "rollback"] = "promotion"
    reason: _Text
    metrics: dict[str, Any] = Field(default_factory=dict)
    by: Actor


class ConfigPromotionStartedData(_Data):
    """``riskpipe.analyzer.config.promotion_started.v1``: a promotion of ``version`` is under way.

    Appended before the promotion reads the evidence stream's last sequence,
    and followed by its ``promoted`` event. A worker that sees it with no
    ``promoted`` after it holds the evidence it fetched until the promotion
    is recorded: whatever was stored once the promotion began may be at or
    past its ``effective_from``. A ``promotion_started`` never followed by a
    ``promoted`` (the promoting process died) is finished by promoting again.
    """

    version: ConfigVersion
    kind: Literal["promotion", "rollback"] = "promotion"
    by: Actor


LEARNING_TYPES: dict[str, tuple[type[BaseModel], str]] = {
    OUTCOME_RECORDED: (OutcomeRecordedData, OUTCOMES_STREAM.category),
    CONFIG_PROPOSED: (ConfigProposedData, CONFIGS_STREAM.category),
    CONFIG_PROMOTION_STARTED: (ConfigPromotionStartedData, CONFIGS_STREAM.category),
    CONFIG_PROMOTED: (ConfigPromotedData, CONFIGS_STREAM.category),
}
"""Every event type of the learning loop: its data model and the category that stores it."""


def register_learning_types(schemas: EventSchemas) -> None:
    """Register the outcome and config event types in ``schemas``."""
    for name, (model, category) in LEARNING_TYPES.items():
        schemas.register(name, model, category=category)
