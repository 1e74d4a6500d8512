"""Fitting pattern weights to outcomes, in the analyzer's own form (docs/learning.md).

The model is a logistic regression on the analyzer's features:
``logit P = b + sum_p w_p m_p + c critical + d diversity``, L2-regularised, every
weight at least 0. It becomes an :class:`AnalyzerConfig` by scaling all weights
by one factor, chosen so the mean raw score on the training set is the base
config's; thresholds are chosen so each level flags the same share of the
training examples as the base config does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from analyzers import SeverityWeights
from projections.learning._dataset import SEVERITIES, severity_array
from projections.learning._errors import (
    EmptyHoldoutError,
    EmptyTrainingError,
    EmptyWindowError,
    OneClassError,
    check_horizon,
)
from projections.learning._events import TrainingWindow

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from analyzers import AnalyzerConfig
    from projections.learning._dataset import Dataset

__all__ = ["Fit", "Split", "fit", "saturated", "split"]

_MAX_WEIGHT = 100.0
_THRESHOLD_GAP = 0.01
"""How much wider than the hysteresis margin a level band is kept, at least."""
_LEVELS = ("medium", "high", "critical")
_ROUNDS = 2
"""Rounds of fitting pattern weights, then severity weights, before the last pattern fit."""


def saturated(raw: NDArray[np.float64], saturation: float) -> NDArray[np.float64]:
    """The analyzer's score of raw values: ``1 - 0.5 ** (raw / saturation)``."""
    return np.asarray(1.0 - np.power(0.5, np.maximum(raw, 0.0) / saturation), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Split:
    """Which examples train and which test, and their labels (no leakage across the cut)."""

    cut: float
    horizon: float
    train: NDArray[np.bool_]
    test: NDArray[np.bool_]
    y_train: NDArray[np.int8]
    y_test: NDArray[np.int8]


def split(dataset: Dataset, *, horizon: float, cut: float) -> Split:
    """Train on examples whose horizon ends by ``cut``, test on those after it.

    Training labels see only outcomes observed at or before ``cut``; test
    labels see outcomes up to the window's end, and only test examples whose
    horizon ends by then are kept (a label still open is not a negative).

    Raises:
        InvalidHorizonError: ``horizon`` is not positive and finite.
        EmptyWindowError: the cut is not inside the window.
        EmptyTrainingError: no example's horizon ends by the cut.
        OneClassError: the training labels are all one class.
        EmptyHoldoutError: no example is after the cut.
    """
    check_horizon(horizon)
    since, until = dataset.since.timestamp(), dataset.until.timestamp()
    if not since < cut < until:
        raise EmptyWindowError("the cut must be after --since and before --until")
    times = dataset.times
    train = times + horizon <= cut
    test = (times > cut) & (times + horizon <= until)
    if not train.any():
        raise EmptyTrainingError(horizon)
    y_train = dataset.labels(horizon, observed_until=cut)[train]
    positives = int(y_train.sum())
    if positives in {0, int(train.sum())}:
        raise OneClassError(int(train.sum()), positives)
    if not test.any():
        raise EmptyHoldoutError(
            "no example is after the cut with its horizon ending by --until: move --cut"
            " (or --holdout) earlier, extend --until, or shorten --horizon"
        )
    y_test = dataset.labels(horizon, observed_until=until)[test]
    return Split(cut, horizon, train, test, y_train, y_test)


@dataclass(frozen=True, slots=True)
class Fit:
    """The fitted model, in logit units, and the config it becomes."""

    dataset: Dataset
    split: Split
    l2: float
    intercept: float
    weights: dict[str, float]
    """Per pattern seen in training, in logit units per unit of mass."""
    severity_weights: dict[str, float]
    """Per severity, as the config has them (their total is the base config's)."""
    critical: float
    diversity: float
    scale: float
    config: AnalyzerConfig
    converged: bool

    def training_window(self) -> TrainingWindow:
        """What it was fitted on, as its proposal records it."""
        return TrainingWindow(
            since=self.dataset.since,
            until=self.dataset.until,
            horizon_seconds=self.split.horizon,
            cut=datetime.fromtimestamp(self.split.cut, UTC),
            examples=int(self.split.train.sum()),
            positives=int(self.split.y_train.sum()),
        )

    def summary(self) -> dict[str, Any]:
        """The fit's coefficients, for JSON."""
        return {
            "intercept": self.intercept,
            "weights": self.weights,
            "severity_weights": self.severity_weights,
            "critical": self.critical,
            "diversity": self.diversity,
            "scale": self.scale,
            "l2": self.l2,
            "converged": self.converged,
        }


def _design(
    dataset: Dataset, masses: sparse.csr_matrix | NDArray[np.float64], rows: NDArray[np.bool_]
) -> sparse.csr_matrix:
    extra = np.column_stack([dataset.critical[rows], dataset.diversity[rows]])
    return sparse.hstack([masses[rows], sparse.csr_matrix(extra)], format="csr")


def _severities(
    dataset: Dataset,
    weights: NDArray[np.float64],
    rows: NDArray[np.bool_],
    y: NDArray[np.float64],
    l2: float,
) -> NDArray[np.float64] | None:
    """Severity weights that fit best with pattern ``weights`` held (``None``: none found).

    A config's severity weights never decrease with severity, so the fit is on
    the steps between them (each at least 0): the weight of severity ``k`` is
    the sum of the steps up to ``k``, and a step's feature is the mass of
    every severity from its own up.
    """
    by_severity = dataset.severity_masses(weights)
    steps = np.cumsum(by_severity[:, ::-1], axis=1)[:, ::-1]
    params, _ = _logistic(_design(dataset, steps, rows), y, l2)
    found = np.cumsum(params[1 : 1 + len(SEVERITIES)])
    return found if float(found.sum()) > 0.0 else None


def _logistic(
    z: sparse.csr_matrix, y: NDArray[np.float64], l2: float
) -> tuple[NDArray[np.float64], bool]:
    """``[b, theta]`` minimising mean log-loss + l2/2 |theta|^2, theta >= 0 (L-BFGS-B)."""
    n, k = z.shape
    zt = z.T.tocsr()
    mean = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))

    def objective(params: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        b, theta = params[0], params[1:]
        logit = z @ theta + b
        loss = float(np.mean(np.logaddexp(0.0, logit) - y * logit))
        loss += 0.5 * l2 * float(theta @ theta)
        residual = (0.5 * (1.0 + np.tanh(0.5 * logit)) - y) / n
        grad = np.empty_like(params)
        grad[0] = residual.sum()
        grad[1:] = zt @ residual + l2 * theta
        return loss, grad

    start = np.zeros(k + 1)
    start[0] = np.log(mean / (1 - mean))
    bounds = [(None, None)] + [(0.0, None)] * k
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-8},
    )
    return np.asarray(result.x, dtype=np.float64), bool(result.success)


def _significant(value: float) -> float:
    return float(f"{value:.6g}")


def _thresholds(
    base_scores: NDArray[np.float64],
    scores: NDArray[np.float64],
    base: AnalyzerConfig,
) -> dict[str, float]:
    """Thresholds flagging the base config's share of examples at each level, in order."""
    ranked = np.sort(scores)[::-1]
    top = float(ranked[0])
    chosen: list[float] = []
    for level in _LEVELS:
        share = float(np.mean(base_scores >= getattr(base.thresholds, level)))
        flagged = round(share * len(ranked))
        value = float(ranked[flagged - 1]) if flagged > 0 else (1.0 + top) / 2.0
        chosen.append(round(value, 6))
    gap = base.hysteresis_margin + _THRESHOLD_GAP
    medium, high, critical = chosen
    medium = max(medium, gap)  # the low band (0 to medium) is a band too
    high = max(high, medium + gap)
    critical = max(critical, high + gap)
    if critical > 1.0:
        critical = 1.0
        high = min(high, critical - gap)
        medium = min(medium, high - gap)
    return {"medium": round(medium, 6), "high": round(high, 6), "critical": round(critical, 6)}


def fit(dataset: Dataset, *, horizon: float, cut: float, l2: float = 1e-3) -> Fit:
    """Fit the weights on the training side of ``cut`` and express them as a config.

    Raises:
        LearnError: a subclass saying why the data cannot be fitted.
    """
    held = split(dataset, horizon=horizon, cut=cut)
    base = dataset.base
    y = held.y_train.astype(np.float64)
    count = len(dataset.patterns)
    start = severity_array(base.severity_weights)
    severity = start
    for _ in range(_ROUNDS):  # pattern weights with severities held, then the other way
        masses = dataset.pattern_masses(severity)
        params, converged = _logistic(_design(dataset, masses, held.train), y, l2)
        found = _severities(dataset, params[1 : 1 + count], held.train, y, l2)
        if found is None:
            break
        severity = found * (float(start.sum()) / float(found.sum()))  # the base's total
    masses = dataset.pattern_masses(severity)
    z = _design(dataset, masses, held.train)
    params, converged = _logistic(z, y, l2)
    intercept, theta = float(params[0]), params[1:]
    seen = np.asarray(masses[held.train].getnnz(axis=0) > 0)
    base_raw = dataset.config_raw(base)[held.train]
    learned = z @ theta
    mean_learned = float(np.mean(learned))
    target = float(np.mean(base_raw) - np.mean(dataset.impact[held.train]))
    scale = target / mean_learned if mean_learned > 0.0 and target > 0.0 else 1.0
    weights = {
        p: _significant(min(_MAX_WEIGHT, scale * float(theta[i])))
        for i, p in enumerate(dataset.patterns)
        if seen[i]
    }
    critical = _significant(min(_MAX_WEIGHT, scale * float(theta[count])))
    diversity = scale * float(theta[count + 1])
    rounded = np.maximum.accumulate([_significant(min(_MAX_WEIGHT, v)) for v in severity])
    update: dict[str, Any] = {
        "severity_weights": SeverityWeights(
            **{s.value: float(v) for s, v in zip(SEVERITIES, rounded, strict=True)}
        ),
        "pattern_weights": weights,
        "critical_amplification": critical,
        "diversity_bonus": _significant(min(_MAX_WEIGHT, base.diversity_bonus * diversity)),
        "diversity_cap": _significant(min(_MAX_WEIGHT, base.diversity_cap * diversity)),
    }
    draft = base.model_copy(update=update)
    update["thresholds"] = _thresholds(
        dataset.config_scores(base)[held.train], dataset.config_scores(draft)[held.train], base
    )
    config = base.model_copy(update=update)
    return Fit(
        dataset=dataset,
        split=held,
        l2=l2,
        intercept=intercept,
        weights={p: float(theta[i]) for i, p in enumerate(dataset.patterns) if seen[i]},
        severity_weights={s.value: float(v) for s, v in zip(SEVERITIES, rounded, strict=True)},
        critical=float(theta[count]),
        diversity=float(theta[count + 1]),
        scale=scale,
        config=config,
        converged=converged,
    )
