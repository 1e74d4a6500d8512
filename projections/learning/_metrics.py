"""How a config does on the holdout: ranking, levels and calibration (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from analyzers import AnalyzerConfig
    from projections.learning._fit import Fit

__all__ = [
    "ConfigEvaluation",
    "Evaluation",
    "average_precision",
    "calibration",
    "evaluate",
    "pr_curve",
    "roc_auc",
    "roc_curve",
]

_LEVELS = ("medium", "high", "critical")
_BINS = 10
_CONVERGED = 1e-10
_RIDGE = 1e-2
"""Keeps the calibration finite when the training scores separate the classes."""


def _ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ranks from 1, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    distinct = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(distinct) - 1
    starts = np.flatnonzero(distinct)
    ends = np.append(starts[1:], len(values))
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = average[group]
    return ranks


def roc_auc(y: NDArray[np.int8], scores: NDArray[np.float64]) -> float | None:
    """The probability a positive outranks a negative (ties count half); None for one class."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _ranks(scores)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _steps(
    y: NDArray[np.int8], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """True and false positives flagged at each distinct score (descending), and the scores."""
    order = np.argsort(-scores, kind="mergesort")
    ordered, labels = scores[order], y[order].astype(np.float64)
    last = np.append(ordered[1:] != ordered[:-1], True)
    tp = np.cumsum(labels)[last]
    fp = np.cumsum(1.0 - labels)[last]
    return tp, fp, ordered[last]


def average_precision(y: NDArray[np.int8], scores: NDArray[np.float64]) -> float | None:
    """The area under the precision-recall steps, sum of (R_k - R_k-1) P_k (None: no positive)."""
    positives = float(y.sum())
    if positives == 0 or len(y) == 0:
        return None
    tp, fp, _ = _steps(y, scores)
    recall = tp / positives
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))


def pr_curve(
    y: NDArray[np.int8], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Recall and precision at each distinct score, highest score first."""
    tp, fp, _ = _steps(y, scores)
    return tp / max(float(y.sum()), 1.0), tp / (tp + fp)


def roc_curve(
    y: NDArray[np.int8], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """False and true positive rates at each distinct score, from (0, 0)."""
    tp, fp, _ = _steps(y, scores)
    positives = max(float(y.sum()), 1.0)
    negatives = max(float(len(y) - y.sum()), 1.0)
    return np.concatenate(([0.0], fp / negatives)), np.concatenate(([0.0], tp / positives))


def _sigmoid(logit: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -30.0, 30.0))), dtype=np.float64)


def _platt(scores: NDArray[np.float64], y: NDArray[np.int8]) -> tuple[float, float]:
    """``(a, b)`` of ``P = sigmoid(a + b score)`` by Newton's method (ridge-regularised)."""
    x = np.column_stack([np.ones_like(scores), scores])
    beta = np.zeros(2)
    target = y.astype(np.float64)
    for _ in range(50):
        p = _sigmoid(x @ beta)
        gradient = x.T @ (p - target) + _RIDGE * beta
        hessian = (x.T * (p * (1.0 - p))) @ x + _RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < _CONVERGED:
            break
    return float(beta[0]), float(beta[1])


def calibration(
    probabilities: NDArray[np.float64], y: NDArray[np.int8]
) -> list[dict[str, float | int]]:
    """Ten equal bins of predicted probability: mean predicted, observed rate, count."""
    bins = np.minimum((probabilities * _BINS).astype(np.int64), _BINS - 1)
    rows: list[dict[str, float | int]] = []
    for index in range(_BINS):
        inside = bins == index
        count = int(inside.sum())
        if count:
            rows.append(
                {
                    "bin": index,
                    "predicted": float(probabilities[inside].mean()),
                    "observed": float(y[inside].mean()),
                    "count": count,
                }
            )
    return rows


@dataclass(frozen=True, slots=True)
class ConfigEvaluation:
    """One config's scores on the holdout and what they amount to."""

    config: AnalyzerConfig
    scores: NDArray[np.float64]
    probabilities: NDArray[np.float64]
    metrics: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The base and the proposed config on the same holdout."""

    y: NDArray[np.int8]
    base: ConfigEvaluation
    proposed: ConfigEvaluation

    def metrics(self) -> dict[str, Any]:
        """Both configs' metrics, for JSON."""
        return {"base": self.base.metrics, "proposed": self.proposed.metrics}

    def proposal_metrics(self) -> dict[str, Any]:
        """What a learned config's proposal records: the headline figures, then everything."""
        base, proposed = self.base.metrics, self.proposed.metrics
        return {
            "pr_auc": proposed["pr_auc"],
            "roc_auc": proposed["roc_auc"],
            "base_pr_auc": base["pr_auc"],
            "base_roc_auc": base["roc_auc"],
            "holdout": self.metrics(),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _one(learned: Fit, config: AnalyzerConfig) -> ConfigEvaluation:
    dataset, held = learned.dataset, learned.split
    scores = dataset.config_scores(config)
    train, test, y = scores[held.train], scores[held.test], held.y_test
    a, b = _platt(train, held.y_train)
    probabilities = _sigmoid(a + b * test)
    positives = int(y.sum())
    levels: dict[str, dict[str, float | int | None]] = {}
    for level in _LEVELS:
        threshold = float(getattr(config.thresholds, level))
        flagged = test >= threshold
        alerts = int(flagged.sum())
        hits = int(y[flagged].sum())
        levels[level] = {
            "threshold": threshold,
            "alerts": alerts,
            "share": _rounded(alerts / len(y)),
            "precision": _rounded(hits / alerts) if alerts else None,
            "recall": _rounded(hits / positives) if positives else None,
        }
    brier = float(np.mean((probabilities - y) ** 2))
    metrics: dict[str, Any] = {
        "fingerprint": config.fingerprint(),
        "examples": len(y),
        "positives": positives,
        "roc_auc": _rounded(roc_auc(y, test)),
        "pr_auc": _rounded(average_precision(y, test)),
        "levels": levels,
        "calibration": {
            "intercept": round(a, 6),
            "slope": round(b, 6),
            "brier": round(brier, 6),
            "bins": calibration(probabilities, y),
        },
    }
    return ConfigEvaluation(config, test, probabilities, metrics)


def evaluate(learned: Fit) -> Evaluation:
    """The base config and the fitted one, scored on the holdout with the same labels."""
    return Evaluation(
        learned.split.y_test,
        _one(learned, learned.dataset.base),
        _one(learned, learned.config),
    )
