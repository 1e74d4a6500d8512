"""The learning report: ``report.md`` and its charts (matplotlib, no display needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt

from projections.learning._metrics import pr_curve, roc_curve

if TYPE_CHECKING:
    from pathlib import Path

    from projections.learning._fit import Fit
    from projections.learning._metrics import Evaluation

__all__ = ["write_report"]

_CHARTS = ("pr.png", "roc.png", "calibration.png", "weights.png")


def _save(figure: Any, path: Path) -> None:  # noqa: ANN401 - a matplotlib figure
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _curves(evaluation: Evaluation, directory: Path) -> None:
    y = evaluation.y
    pr, pr_axes = plt.subplots(figsize=(5, 4))
    roc, roc_axes = plt.subplots(figsize=(5, 4))
    cal, cal_axes = plt.subplots(figsize=(5, 4))
    for name, scored in (("base", evaluation.base), ("proposed", evaluation.proposed)):
        recall, precision = pr_curve(y, scored.scores)
        pr_axes.step(
            recall, precision, where="post", label=f"{name} (AP {scored.metrics['pr_auc']})"
        )
        fpr, tpr = roc_curve(y, scored.scores)
        roc_axes.plot(fpr, tpr, label=f"{name} (AUC {scored.metrics['roc_auc']})")
        bins = scored.metrics["calibration"]["bins"]
        cal_axes.plot(
            [b["predicted"] for b in bins], [b["observed"] for b in bins], "o-", label=name
        )
    pr_axes.set(xlabel="recall", ylabel="precision", title="precision-recall (holdout)")
    roc_axes.plot([0, 1], [0, 1], ":", color="grey")
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    cal_axes.plot([0, 1], [0, 1], ":", color="grey")
    cal_axes.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
    for axes in (pr_axes, roc_axes, cal_axes):
        axes.legend(loc="best")
    _save(pr, directory / "pr.png")
    _save(roc, directory / "roc.png")
    _save(cal, directory / "calibration.png")


def _weights(learned: Fit, directory: Path) -> None:
    patterns = list(learned.dataset.patterns)
    base = learned.dataset.base.pattern_weights
    proposed = learned.config.pattern_weights
    figure, axes = plt.subplots(figsize=(max(5.0, 0.8 * len(patterns) + 2), 4))
    positions = range(len(patterns))
    axes.bar([p - 0.2 for p in positions], [base.get(n, 1.0) for n in patterns], 0.4, label="base")
    axes.bar(
        [p + 0.2 for p in positions],
        [proposed.get(n, 1.0) for n in patterns],
        0.4,
        label="proposed",
    )
    axes.set_xticks(list(positions), patterns, rotation=30, ha="right")
    axes.set(ylabel="pattern weight", title="pattern weights")
    axes.legend(loc="best")
    _save(figure, directory / "weights.png")


def _cell(value: object) -> str:
    """A metric as a table cell: ``-`` where there was nothing to divide by."""
    return "-" if value is None else str(value)


def _level_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for level, found in metrics["levels"].items():
        rows.append(
            f"| {level} | {found['threshold']:.4g} | {found['alerts']} |"
            f" {_cell(found['precision'])} | {_cell(found['recall'])} |"
        )
    return rows


def write_report(
    learned: Fit, evaluation: Evaluation, summary: dict[str, Any], directory: Path
) -> Path:
    """Write ``report.md`` and the charts into ``directory`` (created); return the report's path."""
    directory.mkdir(parents=True, exist_ok=True)
    _curves(evaluation, directory)
    _weights(learned, directory)
    base, proposed = evaluation.base.metrics, evaluation.proposed.metrics
    training = summary["training"]
    lines = [
        f"# riskpipe learn: {summary['version']}",
        "",
        f"Fingerprint `{summary['fingerprint']}`; base `{base['fingerprint']}`.",
        "",
        "## Training window",
        "",
        f"- since {training['since']}, until {training['until']}, cut {training['cut']}",
        f"- horizon {training['horizon_seconds']:g} s",
        f"- training examples {training['examples']}, positives {training['positives']}",
        f"- holdout examples {base['examples']}, positives {base['positives']}",
        f"- outcomes of unknown entities (ignored): {summary['unknown_outcomes']}",
        "",
        "## Holdout metrics",
        "",
        "| metric | base | proposed |",
        "|---|---|---|",
        f"| ROC-AUC | {_cell(base['roc_auc'])} | {_cell(proposed['roc_auc'])} |",
        f"| PR-AUC (average precision) | {_cell(base['pr_auc'])} | {_cell(proposed['pr_auc'])} |",
        (
            f"| Brier score (calibrated) | {base['calibration']['brier']}"
            f" | {proposed['calibration']['brier']} |"
        ),
        "",
        "### Levels (flagged = score at or above the level's threshold)",
        "",
        "Base:",
        "",
        "| level | threshold | alerts | precision | recall |",
        "|---|---|---|---|---|",
        *_level_rows(base),
        "",
        "Proposed:",
        "",
        "| level | threshold | alerts | precision | recall |",
        "|---|---|---|---|---|",
        *_level_rows(proposed),
        "",
        "## Weights",
        "",
        "| pattern | base | proposed |",
        "|---|---|---|",
        *[
            f"| {p} | {learned.dataset.base.pattern_weights.get(p, 1.0):g}"
            f" | {learned.config.pattern_weights.get(p, 1.0):g} |"
            for p in learned.dataset.patterns
        ],
        *[
            f"| severity {s} | {getattr(learned.dataset.base.severity_weights, s):g}"
            f" | {getattr(learned.config.severity_weights, s):g} |"
            for s in ("low", "medium", "high", "critical")
        ],
        (
            f"| critical amplification | {learned.dataset.base.critical_amplification:g}"
            f" | {learned.config.critical_amplification:g} |"
        ),
        "",
        "## Charts",
        "",
        *[f"![{name[:-4]}]({name})" for name in _CHARTS],
        "",
        "How to read this report: docs/learning.md.",
        "",
    ]
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
