"""Evaluate: score challenger and champion on the same held-out rows and decide promotion.

The gate promotes only if the challenger clears the absolute floor, beats the champion by the
configured margin and no slice drops by more than allowed; with no champion the floor decides.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.ct import registry
from include.ct.config import PipelineConfig, metric_higher_is_better
from include.ct.train import coerce_to_schema

log = logging.getLogger(__name__)


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


def metrics_of_scores(config: PipelineConfig, scores: Scores, target: pd.Series) -> dict[str, float]:
    """Every metric of the config from one prediction pass (NaN where undefined)."""
    from sklearn import metrics as skm

    results: dict[str, float] = {}
    if config.task == "regression":
        predicted = scores.predicted
        actual = np.asarray(target, dtype=float)
        for metric in config.all_metrics:
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
    for metric in config.all_metrics:
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


def slice_metrics(
    config: PipelineConfig, model: Any, test: pd.DataFrame, *, scores: Scores | None = None
) -> dict[str, dict[str, float]]:
    """The primary metric on every slice value with enough rows, keyed ``column=value``.

    ``scores`` (one pass over ``test``) avoids predicting every slice again.
    """
    if scores is None:
        scores = score(config, model, test[config.feature_names])
    results: dict[str, dict[str, float]] = {}
    for column in config.slices:
        for value, positions in (
            test.reset_index(drop=True).groupby(column, dropna=False, observed=True).indices.items()
        ):
            if len(positions) < config.promotion.min_slice_rows:
                continue
            target = test[config.target].iloc[positions]
            metric = metrics_of_scores(config, scores.take(positions), target)[config.metric]
            if not math.isnan(metric):
                results[f"{column}={value}"] = {config.metric: metric, "rows": float(len(positions))}
    return results


@dataclass
class GateDecision:
    """The promotion decision and every reason behind it."""

    promote: bool
    metric: str
    challenger: float
    champion: float | None
    delta: float | None
    threshold: float
    min_improvement: float
    reasons: list[str] = field(default_factory=list)
    slice_drops: dict[str, float] = field(default_factory=dict)
    champion_version: str | None = None

    @property
    def summary(self) -> str:
        verdict = "promote" if self.promote else "reject"
        return f"{verdict}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


def decide(
    config: PipelineConfig,
    challenger: dict[str, float],
    challenger_slices: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    champion_slices: dict[str, dict[str, float]] | None,
    *,
    min_improvement: float | None = None,
    champion_version: str | None = None,
) -> GateDecision:
    """Apply the floor, the margin over the champion and the slice guard, in the metric's direction."""
    metric = config.metric
    sign = 1.0 if metric_higher_is_better(metric) else -1.0
    margin = config.promotion.min_improvement if min_improvement is None else min_improvement
    value = challenger[metric]
    decision = GateDecision(
        promote=True,
        metric=metric,
        challenger=value,
        champion=None,
        delta=None,
        threshold=config.promotion.threshold,
        min_improvement=margin,
        champion_version=champion_version,
    )
    better, worse = ("above", "below") if sign > 0 else ("below", "above")
    threshold = config.promotion.threshold
    if math.isnan(value):
        decision.promote = False
        decision.reasons.append(f"{metric} is undefined on the held-out data")
        return decision
    below_floor = sign * (value - threshold) < 0
    if not below_floor:
        decision.reasons.append(f"{metric} {value:.4f} clears the threshold {threshold}")

    if champion is None or math.isnan(champion.get(metric, math.nan)):
        if below_floor:
            decision.promote = False
            decision.reasons.append(f"{metric} {value:.4f} is {worse} the threshold {threshold}")
        decision.reasons.append("no champion to compare with: the threshold alone decides")
        return decision

    decision.champion = champion[metric]
    if below_floor:
        failing_champion = sign * (decision.champion - threshold) < 0
        if failing_champion and config.promotion.replace_failing_champion:
            decision.reasons.append(
                f"{metric} {value:.4f} is {worse} the threshold {threshold}, but so is champion "
                f"v{champion_version} ({decision.champion:.4f}) on the same rows: the better of the "
                "two may serve (promotion.replace_failing_champion)"
            )
        else:
            decision.promote = False
            decision.reasons.append(f"{metric} {value:.4f} is {worse} the threshold {threshold}")
    improvement = sign * (value - decision.champion)
    decision.delta = value - decision.champion
    if improvement < margin or (margin <= 0 and improvement == 0):
        decision.promote = False
        decision.reasons.append(
            f"{metric} {value:.4f} vs champion v{champion_version} {decision.champion:.4f}: "
            f"improvement {improvement:+.4f} does not reach the required margin {margin:+.4f}"
        )
    else:
        decision.reasons.append(
            f"{metric} {value:.4f} is {better if improvement >= 0 else worse} champion v{champion_version} "
            f"{decision.champion:.4f} by {abs(improvement):.4f} (margin {margin})"
        )
    for slice_key, champ_slice in (champion_slices or {}).items():
        chal_slice = challenger_slices.get(slice_key)
        if chal_slice is None:
            continue
        drop = sign * (champ_slice[metric] - chal_slice[metric])
        decision.slice_drops[slice_key] = drop
        if drop > config.promotion.max_slice_drop:
            decision.promote = False
            decision.reasons.append(
                f"slice {slice_key}: {metric} drops by {drop:.4f} "
                f"(max allowed {config.promotion.max_slice_drop})"
            )
    return decision


def evaluate_challenger(
    config: PipelineConfig,
    run_id: str,
    test_path: str,
    *,
    min_improvement: float | None = None,
) -> GateDecision:
    """Score the challenger run and the current champion on ``test_path`` and log the decision."""
    import mlflow

    from include.ct.plots import comparison_plot

    test = coerce_to_schema(config, pd.read_parquet(test_path))
    features = config.feature_names
    challenger_model = registry.load_model(f"models:/{registry.logged_model_id(run_id)}")
    challenger_scores = score(config, challenger_model, test[features])
    challenger = metrics_of_scores(config, challenger_scores, test[config.target])
    challenger_slices = slice_metrics(config, challenger_model, test, scores=challenger_scores)

    champion_version = registry.get_champion(config)
    champion: dict[str, float] | None = None
    champion_slices: dict[str, dict[str, float]] | None = None
    extra_reason = None
    if champion_version is not None and champion_version.run_id == run_id:
        value = challenger[config.metric]
        decision = GateDecision(
            promote=False,
            metric=config.metric,
            challenger=value,
            champion=value,
            delta=0.0,
            threshold=config.promotion.threshold,
            min_improvement=config.promotion.min_improvement if min_improvement is None else min_improvement,
            reasons=[f"run {run_id} is already the champion (v{champion_version.version})"],
            champion_version=champion_version.version,
        )
        _log_decision(run_id, decision, challenger, None, challenger_slices, None)
        return decision
    if champion_version is not None:
        try:
            champion_model = registry.load_model(
                f"models:/{config.registered_model_name}/{champion_version.version}"
            )
            champion_scores = score(config, champion_model, test[features])
            champion = metrics_of_scores(config, champion_scores, test[config.target])
            champion_slices = slice_metrics(config, champion_model, test, scores=champion_scores)
        except Exception as exc:  # noqa: BLE001 - e.g. the schema changed since the champion
            extra_reason = f"champion v{champion_version.version} could not be scored ({exc})"
            log.warning(extra_reason)

    decision = decide(
        config,
        challenger,
        challenger_slices,
        champion,
        champion_slices,
        min_improvement=min_improvement,
        champion_version=champion_version.version if champion_version else None,
    )
    if extra_reason:
        decision.reasons.insert(0, extra_reason)
    _log_decision(run_id, decision, challenger, champion, challenger_slices, champion_slices)
    with tempfile.TemporaryDirectory() as tmp_dir, mlflow.start_run(run_id=run_id):
        plot = comparison_plot(config, decision, challenger_slices, champion_slices, Path(tmp_dir))
        mlflow.log_artifact(str(plot), artifact_path="evaluation")
    log.info("Gate decision for run %s: %s", run_id, decision.summary)
    return decision


def _log_decision(
    run_id: str,
    decision: GateDecision,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    challenger_slices: dict[str, dict[str, float]],
    champion_slices: dict[str, dict[str, float]] | None,
) -> None:
    import mlflow

    def clean(name: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in name)

    with mlflow.start_run(run_id=run_id):
        values = {f"eval_challenger_{k}": v for k, v in challenger.items() if not math.isnan(v)}
        if champion:
            values.update({f"eval_champion_{k}": v for k, v in champion.items() if not math.isnan(v)})
        if decision.delta is not None:
            values["eval_delta"] = decision.delta
        for key, slice_values in challenger_slices.items():
            values[clean(f"slice_{key}_{decision.metric}")] = slice_values[decision.metric]
        mlflow.log_metrics(values)
        mlflow.set_tags(
            {
                "ct.decision": "promote" if decision.promote else "reject",
                "ct.decision_reason": decision.summary[:5000],
                "ct.compared_with_champion": str(decision.champion_version or "none"),
            }
        )
        mlflow.log_dict(
            {
                **decision.to_dict(),
                "challenger_metrics": challenger,
                "champion_metrics": champion,
                "challenger_slices": challenger_slices,
                "champion_slices": champion_slices,
            },
            "evaluation/decision.json",
        )
