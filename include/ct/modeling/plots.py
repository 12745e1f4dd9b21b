"""Plots logged to MLflow where people would rather look than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.modeling.metrics import Scores, score


class Comparison(Protocol):
    """What the comparison plot shows of a gate decision (``evaluate.GateDecision`` has it)."""

    metric: str
    challenger: float
    champion: float | None
    threshold: float
    promote: bool

    @property
    def outcome(self) -> str: ...


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (tasks never draw to a screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_plots(
    config: PipelineConfig, model: Any, test: pd.DataFrame, out: Path, *, scores: Scores | None = None
) -> list[Path]:
    """Confusion matrix and ROC curve (classification) or predicted-vs-actual (regression).

    ``scores`` (the held-out predictions already made for the metrics) avoids predicting again.
    """
    plt = pyplot()
    target = test[config.target]
    if scores is None:
        scores = score(config, model, test[config.feature_names])
    paths: list[Path] = []
    if config.task == "classification":
        from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

        classes = list(scores.classes or model.classes_)
        fig, ax = plt.subplots(figsize=(5, 4))
        ConfusionMatrixDisplay.from_predictions(
            target, scores.predicted, labels=classes, ax=ax, colorbar=False
        )
        ax.set_title(f"{config.name}: confusion matrix (held-out)")
        paths.append(_save(fig, out / "confusion_matrix.png"))
        if len(classes) == 2 and target.nunique() == 2 and scores.probabilities is not None:
            fig, ax = plt.subplots(figsize=(5, 4))
            RocCurveDisplay.from_predictions(
                target, scores.probabilities[:, 1], pos_label=classes[1], ax=ax, name=type(model).__name__
            )
            ax.set_title(f"{config.name}: ROC curve (held-out)")
            paths.append(_save(fig, out / "roc_curve.png"))
    else:
        predicted = scores.predicted
        actual = np.asarray(target, dtype=float)
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.scatter(actual, predicted, s=6, alpha=0.5)
        low, high = float(np.min(actual)), float(np.max(actual))
        left.plot([low, high], [low, high], color="grey", linewidth=1)
        left.set_xlabel("actual")
        left.set_ylabel("predicted")
        left.set_title("predicted vs actual (held-out)")
        right.hist(predicted - actual, bins=40)
        right.set_title("residuals")
        paths.append(_save(fig, out / "predicted_vs_actual.png"))
    return paths


def comparison_plot(
    config: PipelineConfig,
    decision: Comparison,
    challenger_slices: dict[str, dict[str, float]],
    champion_slices: dict[str, dict[str, float]] | None,
    out: Path,
) -> Path:
    """Challenger against champion on the primary metric, overall and per slice."""
    plt = pyplot()
    labels = ["overall", *challenger_slices]
    challenger = [decision.challenger, *(v[decision.metric] for v in challenger_slices.values())]
    champion = [
        decision.champion if decision.champion is not None else np.nan,
        *((champion_slices or {}).get(k, {}).get(decision.metric, np.nan) for k in challenger_slices),
    ]
    positions = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.2), 4))
    ax.bar(positions - 0.2, champion, width=0.4, label="champion")
    ax.bar(positions + 0.2, challenger, width=0.4, label="challenger")
    ax.axhline(decision.threshold, color="red", linestyle="--", linewidth=1, label="threshold")
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    ax.set_ylabel(decision.metric)
    ax.set_title(f"{config.name}: {decision.outcome.upper()}")
    ax.legend()
    return _save(fig, out / "champion_vs_challenger.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot().close(fig)
    return path
