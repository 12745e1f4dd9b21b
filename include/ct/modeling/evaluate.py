"""Evaluate: score challenger and champion on the same held-out rows and decide promotion.

The gate promotes only if the challenger clears the absolute floor, beats the champion by the
configured margin and no slice drops by more than allowed; with no champion the floor decides.
With ``promotion.confidence`` the margin and the slices are judged on the paired improvement's
confidence interval (``paired``), and a difference the rows cannot resolve is *inconclusive*:
not promoted, not failed.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from include.ct.config import PipelineConfig, metric_higher_is_better
from include.ct.modeling.metrics import Scores, metrics_of_scores, score, slice_metrics, slice_positions
from include.ct.modeling.paired import PairedComparison, compare
from include.ct.modeling.pipeline_building import coerce_to_schema
from include.ct.modeling.plots import comparison_plot
from include.ct.registry import registry

log = logging.getLogger(__name__)


PROMOTE, REJECT, INCONCLUSIVE = "promote", "reject", "inconclusive"


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
    inconclusive: bool = False
    comparison: dict[str, Any] | None = None  # PairedComparison.to_dict() of the metric
    slice_comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """promote, reject, or inconclusive (the rows cannot tell the two models apart)."""
        return PROMOTE if self.promote else INCONCLUSIVE if self.inconclusive else REJECT

    @property
    def summary(self) -> str:
        return f"{self.outcome}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome, "summary": self.summary}


def decide(
    config: PipelineConfig,
    challenger: dict[str, float],
    challenger_slices: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    champion_slices: dict[str, dict[str, float]] | None,
    *,
    min_improvement: float | None = None,
    champion_version: str | None = None,
    comparison: PairedComparison | None = None,
    slice_comparisons: dict[str, PairedComparison] | None = None,
) -> GateDecision:
    """Apply the floor, the margin over the champion and the slice guard, in the metric's direction.

    With ``comparison`` (the paired test of the metric on the same rows) the margin is judged on
    its interval, and with ``slice_comparisons`` each slice too; without, on point estimates.
    """
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
    decision.delta = value - decision.champion
    if comparison is not None and not math.isnan(comparison.improvement):
        _judge_interval(decision, comparison, margin, champion_version)
    else:
        _judge_point(decision, sign * (value - decision.champion), margin, champion_version, better, worse)
    for slice_key, champ_slice in (champion_slices or {}).items():
        chal_slice = challenger_slices.get(slice_key)
        if chal_slice is None:
            continue
        drop = sign * (champ_slice[metric] - chal_slice[metric])
        decision.slice_drops[slice_key] = drop
        allowed = config.promotion.max_slice_drop
        paired = (slice_comparisons or {}).get(slice_key)
        if paired is not None and not math.isnan(paired.high):
            decision.slice_comparisons[slice_key] = paired.to_dict()
            if paired.high < -allowed:
                decision.promote = False
                decision.reasons.append(
                    f"slice {slice_key}: {metric} drops by {drop:.4f}, beyond the allowed {allowed} even at "
                    f"the interval's best: improvement {paired.describe()}"
                )
            elif drop > allowed:
                _inconclusive(
                    decision,
                    f"slice {slice_key}: {metric} drops by {drop:.4f} (max allowed {allowed}) but the rows "
                    f"cannot tell: improvement {paired.describe()}",
                )
        elif drop > allowed:
            decision.promote = False
            decision.reasons.append(
                f"slice {slice_key}: {metric} drops by {drop:.4f} (max allowed {allowed})"
            )
    # A rule that rejected outranks one that could not tell; "inconclusive" alone blocks promotion.
    if decision.inconclusive:
        decision.inconclusive, decision.promote = decision.promote, False
    return decision


def _judge_point(
    decision: GateDecision,
    improvement: float,
    margin: float,
    champion_version: str | None,
    better: str,
    worse: str,
) -> None:
    """The margin on point estimates (``promotion.confidence: null``, or no paired test possible)."""
    metric, value, champion = decision.metric, decision.challenger, decision.champion
    if improvement < margin or (margin <= 0 and improvement == 0):
        decision.promote = False
        decision.reasons.append(
            f"{metric} {value:.4f} vs champion v{champion_version} {champion:.4f}: "
            f"improvement {improvement:+.4f} does not reach the required margin {margin:+.4f}"
        )
    else:
        decision.reasons.append(
            f"{metric} {value:.4f} is {better if improvement >= 0 else worse} champion v{champion_version} "
            f"{champion:.4f} by {abs(improvement):.4f} (margin {margin})"
        )


def _judge_interval(
    decision: GateDecision, comparison: PairedComparison, margin: float, champion_version: str | None
) -> None:
    """The margin on the paired interval: its lower bound must clear it; an interval wholly at or
    below it rejects; one that straddles it is inconclusive."""
    decision.comparison = comparison.to_dict()
    versus = (
        f"{decision.metric} vs champion v{champion_version} on the same rows: "
        f"improvement {comparison.describe()}"
    )
    if comparison.low > margin:
        decision.reasons.append(f"{versus}: its lower bound clears the margin {margin:+.4f}")
    elif comparison.high <= margin:
        decision.promote = False
        decision.reasons.append(f"{versus}: the whole interval is at or below the margin {margin:+.4f}")
    else:
        _inconclusive(decision, f"{versus}: the interval straddles the margin {margin:+.4f}")


def _inconclusive(decision: GateDecision, reason: str) -> None:
    """Mark a rule the rows cannot resolve; ``decide`` turns it into the outcome unless a rule rejected."""
    decision.inconclusive = True
    decision.reasons.append(reason)


def evaluate_challenger(
    config: PipelineConfig,
    run_id: str,
    test_path: str,
    *,
    min_improvement: float | None = None,
) -> GateDecision:
    """Score the challenger run and the current champion on ``test_path`` and log the decision."""
    import mlflow

    test = coerce_to_schema(config, pd.read_parquet(test_path))
    features = config.feature_names
    challenger_model = registry.load_model(f"models:/{registry.logged_model_id(run_id)}")
    challenger_scores = score(config, challenger_model, test[features])
    challenger = metrics_of_scores(config, challenger_scores, test[config.target])
    challenger_slices = slice_metrics(config, challenger_model, test, scores=challenger_scores)

    champion_version = registry.get_champion(config)
    champion: dict[str, float] | None = None
    champion_slices: dict[str, dict[str, float]] | None = None
    comparison: PairedComparison | None = None
    slice_comparisons: dict[str, PairedComparison] = {}
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
        with mlflow.start_run(run_id=run_id):
            _log_decision(decision, challenger, None, challenger_slices, None)
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
        else:
            if config.promotion.confidence is not None:
                comparison, slice_comparisons = paired_comparisons(
                    config, test, challenger_scores, champion_scores, config.promotion.confidence
                )

    decision = decide(
        config,
        challenger,
        challenger_slices,
        champion,
        champion_slices,
        min_improvement=min_improvement,
        champion_version=champion_version.version if champion_version else None,
        comparison=comparison,
        slice_comparisons=slice_comparisons,
    )
    if extra_reason:
        decision.reasons.insert(0, extra_reason)
    with tempfile.TemporaryDirectory() as tmp_dir, mlflow.start_run(run_id=run_id):  # one reopening
        _log_decision(decision, challenger, champion, challenger_slices, champion_slices)
        plot = comparison_plot(config, decision, challenger_slices, champion_slices, Path(tmp_dir))
        mlflow.log_artifact(str(plot), artifact_path="evaluation")
    log.info("Gate decision for run %s: %s", run_id, decision.summary)
    return decision


def paired_comparisons(
    config: PipelineConfig, test: pd.DataFrame, challenger: Scores, champion: Scores, confidence: float
) -> tuple[PairedComparison, dict[str, PairedComparison]]:
    """The metric's paired test on all rows, and on each slice at the level corrected for the
    number of slices (Bonferroni), so that judging many slices does not multiply false alarms."""
    target = test[config.target].to_numpy()
    overall = compare(config.metric, target, challenger, champion, confidence=confidence)
    positions = slice_positions(config, test)
    corrected = 1 - (1 - confidence) / max(len(positions), 1)
    slices = {
        key: compare(
            config.metric,
            target[rows],
            challenger.take(rows),
            champion.take(rows),
            confidence=corrected,
        )
        for key, rows in positions.items()
    }
    log.info(
        "paired %s: improvement %s; %d slices at %.4f",
        config.metric,
        overall.describe(),
        len(slices),
        corrected,
    )
    return overall, slices


def _log_decision(
    decision: GateDecision,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    challenger_slices: dict[str, dict[str, float]],
    champion_slices: dict[str, dict[str, float]] | None,
) -> None:
    """Log the gate's metrics, tags and decision.json to the active (evaluated) run."""
    import mlflow

    def clean(name: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in name)

    values = {f"eval_challenger_{k}": v for k, v in challenger.items() if not math.isnan(v)}
    if champion:
        values.update({f"eval_champion_{k}": v for k, v in champion.items() if not math.isnan(v)})
    if decision.delta is not None:
        values["eval_delta"] = decision.delta
    for key, slice_values in challenger_slices.items():
        values[clean(f"slice_{key}_{decision.metric}")] = slice_values[decision.metric]
    paired = decision.comparison
    if paired is not None:
        values.update(
            {
                "eval_improvement": paired["improvement"],
                "eval_improvement_low": paired["low"],
                "eval_improvement_high": paired["high"],
                "eval_rows": paired["n"],
                "eval_confidence": paired["confidence"],
            }
        )
        if paired["p_value"] is not None:
            values["eval_p_value"] = paired["p_value"]
    mlflow.log_metrics({key: value for key, value in values.items() if not math.isnan(value)})
    mlflow.set_tags(
        {
            "ct.decision": decision.outcome,
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
