"""Metrics: one prediction pass over held-out rows, and every configured metric from it.

Shared by training (held-out metrics), evaluation (challenger against champion, per slice), the
training-window choice and the simulation, so each scores models the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig


@dataclass
class Scores:
    """One prediction pass over some rows: labels (or values) and class probabilities."""

    predicted: np.ndarray
    probabilities: np.ndarray | None = None
    classes: list[Any] | None = None

    def take(self, rows: np.ndarray) -> Scores:
        """The scores of the rows at positions ``rows``."""
        probabilities = None if self.probabilities is None else self.probabilities[rows]
        return Scores(self.predicted[rows], probabilities, self.classes)


def score(config: PipelineConfig, model: Any, features: pd.DataFrame) -> Scores:
    """Predict ``features`` once; classifiers with probabilities take labels from their argmax."""
    if config.task == "regression":
        return Scores(np.asarray(model.predict(features), dtype=float))
    classes = list(model.classes_)
    if hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(features))
        predicted = np.asarray(model.classes_)[probabilities.argmax(axis=1)]
        return Scores(predicted, probabilities, classes)
    return Scores(np.asarray(model.predict(features)), None, classes)


def compute_metrics(
    config: PipelineConfig, model: Any, features: pd.DataFrame, target: pd.Series
) -> dict[str, float]:
    """Every metric of the config for ``model`` on the given rows (NaN where undefined)."""
    return metrics_of_scores(config, score(config, model, features), target)


def metrics_of_scores(
    config: PipelineConfig, scores: Scores, target: pd.Series, metrics: Sequence[str] | None = None
) -> dict[str, float]:
    """Every metric of the config, or only ``metrics``, from one prediction pass (NaN where
    undefined)."""
    from sklearn import metrics as skm

    wanted = config.all_metrics if metrics is None else metrics
    results: dict[str, float] = {}
    if config.task == "regression":
        predicted = scores.predicted
        actual = np.asarray(target, dtype=float)
        for metric in wanted:
            if metric == "rmse":
                results[metric] = float(math.sqrt(skm.mean_squared_error(actual, predicted)))
            elif metric == "mae":
                results[metric] = float(skm.mean_absolute_error(actual, predicted))
            elif metric == "r2":
                results[metric] = float(skm.r2_score(actual, predicted)) if len(actual) > 1 else math.nan
        return results

    predicted = scores.predicted
    classes = list(scores.classes or [])
    binary = len(classes) == 2
    probabilities = scores.probabilities
    single_class = pd.Series(target).nunique() < 2
    for metric in wanted:
        if metric == "accuracy":
            results[metric] = float(skm.accuracy_score(target, predicted))
        elif metric == "f1":
            if binary:
                value = skm.f1_score(target, predicted, pos_label=classes[1], zero_division=0)
            else:
                value = skm.f1_score(target, predicted, average="weighted", zero_division=0)
            results[metric] = float(value)
        elif metric == "f1_macro":
            results[metric] = float(skm.f1_score(target, predicted, average="macro", zero_division=0))
        elif metric == "roc_auc":
            if probabilities is None or single_class:
                results[metric] = math.nan
            elif binary:
                results[metric] = float(
                    skm.roc_auc_score(pd.Series(target) == classes[1], probabilities[:, 1])
                )
            else:
                results[metric] = float(
                    skm.roc_auc_score(target, probabilities, multi_class="ovr", labels=classes)
                )
        elif metric == "log_loss":
            results[metric] = (
                math.nan
                if probabilities is None
                else float(skm.log_loss(target, probabilities, labels=classes))
            )
    return results


def slice_positions(config: PipelineConfig, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row positions of every slice value with at least ``promotion.min_slice_rows`` rows, keyed
    ``column=value``."""
    positions: dict[str, np.ndarray] = {}
    frame = test.reset_index(drop=True)
    for column in config.slices:
        for value, rows in frame.groupby(column, dropna=False, observed=True).indices.items():
            if len(rows) >= config.promotion.min_slice_rows:
                positions[f"{column}={value}"] = np.asarray(rows)
    return positions


def slice_metrics(
    config: PipelineConfig, model: Any, test: pd.DataFrame, *, scores: Scores | None = None
) -> dict[str, dict[str, float]]:
    """The primary metric on every slice value with enough rows, keyed ``column=value``.

    ``scores`` (one pass over ``test``) avoids predicting every slice again.
    """
    if scores is None:
        scores = score(config, model, test[config.feature_names])
    results: dict[str, dict[str, float]] = {}
    for key, positions in slice_positions(config, test).items():
        target = test[config.target].iloc[positions]
        metric = metrics_of_scores(config, scores.take(positions), target, (config.metric,))[config.metric]
        if not math.isnan(metric):
            results[key] = {config.metric: metric, "rows": float(len(positions))}
    return results
