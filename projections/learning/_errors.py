"""Why ``riskpipe learn`` refuses to fit: each a clear sentence, nothing proposed."""

from __future__ import annotations

import math

__all__ = [
    "EmptyHoldoutError",
    "EmptyTrainingError",
    "EmptyWindowError",
    "InvalidHorizonError",
    "LearnError",
    "NoEvidenceError",
    "OneClassError",
    "check_horizon",
]


class LearnError(Exception):
    """The learning run cannot go on; nothing was proposed."""


class InvalidHorizonError(LearnError):
    """The label horizon is not a positive, finite duration."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"the horizon must be longer than 0 seconds and finite, got {seconds:g}: say how"
            " long after an assessment an outcome still counts for it (e.g. --horizon 7d)"
        )
        self.seconds = seconds


def check_horizon(seconds: float) -> None:
    """Refuse a horizon that is not a positive, finite number of seconds.

    Raises:
        InvalidHorizonError: it is 0 or less, infinite or not a number.
    """
    if not (seconds > 0.0 and math.isfinite(seconds)):
        raise InvalidHorizonError(seconds)


class EmptyWindowError(LearnError):
    """``since`` is not before ``until`` (or the cut is outside the window)."""


class NoEvidenceError(LearnError):
    """No evidence was observed in the window: there is nothing to learn from."""


class EmptyTrainingError(LearnError):
    """No example's horizon ends by the cut: there is nothing to train on."""

    def __init__(self, horizon: float) -> None:
        super().__init__(
            "no training example: an example trains when its horizon"
            f" ({horizon:g} s) ends by the cut, and none does: move --cut later (or"
            " --holdout lower), start --since earlier, or shorten --horizon"
        )
        self.horizon = horizon


class OneClassError(LearnError):
    """The training examples are all positive or all negative: no fit can tell them apart."""

    def __init__(self, examples: int, positives: int) -> None:
        which = "no positive" if positives == 0 else "no negative"
        super().__init__(
            f"the training window has {which} examples ({positives} positive of {examples}):"
            " widen --since/--until, move --cut later, or lengthen --horizon; outcomes"
            " (riskpipe.outcome.recorded.v1) and confirmed reviews are the positives"
        )
        self.examples = examples
        self.positives = positives


class EmptyHoldoutError(LearnError):
    """No example falls after the cut: the learned config could not be evaluated."""
