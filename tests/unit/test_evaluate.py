"""The promotion gate: floor, margin over the champion, slice guard, in the metric's direction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.modeling.evaluate import decide, paired_comparisons
from include.ct.modeling.metrics import Scores
from include.ct.modeling.paired import PairedComparison


def config_with(churn: PipelineConfig, **promotion: float) -> PipelineConfig:
    return churn.model_copy(update={"promotion": churn.promotion.model_copy(update=promotion)})


def test_no_champion_floor_decides(churn: PipelineConfig) -> None:
    assert decide(churn, {"roc_auc": 0.8}, {}, None, None).promote
    rejected = decide(churn, {"roc_auc": 0.6}, {}, None, None)
    assert not rejected.promote
    assert "below the threshold 0.7" in rejected.summary


def test_must_beat_champion_by_margin(churn: PipelineConfig) -> None:
    config = config_with(churn, min_improvement=0.02)
    assert decide(config, {"roc_auc": 0.85}, {}, {"roc_auc": 0.82}, {}).promote
    close = decide(config, {"roc_auc": 0.83}, {}, {"roc_auc": 0.82}, {}, champion_version="3")
    assert not close.promote
    assert "does not reach the required margin" in close.summary
    assert "v3" in close.summary


def test_tie_with_zero_margin_does_not_move_champion(churn: PipelineConfig) -> None:
    assert not decide(churn, {"roc_auc": 0.8}, {}, {"roc_auc": 0.8}, {}).promote


def test_margin_override_wins(churn: PipelineConfig) -> None:
    decision = decide(churn, {"roc_auc": 0.85}, {}, {"roc_auc": 0.80}, {}, min_improvement=0.5)
    assert not decision.promote
    assert decision.min_improvement == 0.5


def test_slice_drop_blocks_promotion(churn: PipelineConfig) -> None:
    decision = decide(
        churn,
        {"roc_auc": 0.86},
        {"plan=premium": {"roc_auc": 0.70}, "plan=basic": {"roc_auc": 0.9}},
        {"roc_auc": 0.80},
        {"plan=premium": {"roc_auc": 0.80}, "plan=basic": {"roc_auc": 0.88}},
    )
    assert not decision.promote
    assert "slice plan=premium" in decision.summary
    assert decision.slice_drops["plan=premium"] == pytest.approx(0.10)


def test_lower_is_better_metrics(churn: PipelineConfig) -> None:
    config = churn.model_copy(
        update={
            "task": "regression",
            "metric": "rmse",
            "metrics": [],
            "promotion": churn.promotion.model_copy(update={"threshold": 5.0}),
        }
    )
    assert decide(config, {"rmse": 3.0}, {}, {"rmse": 3.5}, {}).promote
    assert not decide(config, {"rmse": 3.6}, {}, {"rmse": 3.5}, {}).promote
    above = decide(config, {"rmse": 6.0}, {}, None, None)
    assert not above.promote
    assert "above the threshold" in above.summary


def test_a_better_model_replaces_a_champion_that_fell_below_the_floor(churn: PipelineConfig) -> None:
    """After a concept change both miss the floor on fresh data: keeping the worse one helps nobody."""
    decision = decide(churn, {"roc_auc": 0.66}, {}, {"roc_auc": 0.45}, {}, champion_version="7")
    assert decision.promote
    assert "but so is champion v7 (0.4500)" in decision.summary
    assert not decide(churn, {"roc_auc": 0.44}, {}, {"roc_auc": 0.45}, {}).promote  # still must beat it
    assert not decide(churn, {"roc_auc": 0.66}, {}, {"roc_auc": 0.80}, {}).promote  # a passing champion stays
    strict = churn.model_copy(
        update={"promotion": churn.promotion.model_copy(update={"replace_failing_champion": False})}
    )
    refused = decide(strict, {"roc_auc": 0.66}, {}, {"roc_auc": 0.45}, {})
    assert not refused.promote and "below the threshold 0.7" in refused.summary


def slice_frame(rng: np.random.Generator) -> pd.DataFrame:
    """1,010 held-out rows: plan basic and plus (500 each), premium only 10; contract in two halves."""
    plans = ["basic"] * 500 + ["plus"] * 500 + ["premium"] * 10
    contracts = ["monthly", "annual"] * 505
    return pd.DataFrame({"plan": plans, "contract": contracts, "churned": rng.integers(0, 2, 1010)})


def probability_scores(target: np.ndarray, skill: float, rng: np.random.Generator) -> Scores:
    positive = np.clip(skill * target + (1 - skill) * rng.random(len(target)), 0, 1)
    return Scores((positive > 0.5).astype(int), np.column_stack([1 - positive, positive]), [0, 1])


def test_slices_are_judged_above_min_slice_rows_at_a_level_corrected_for_their_number(
    churn: PipelineConfig,
) -> None:
    rng = np.random.default_rng(11)
    test = slice_frame(rng)
    target = test["churned"].to_numpy()
    challenger, champion = probability_scores(target, 0.5, rng), probability_scores(target, 0.5, rng)
    overall, slices = paired_comparisons(churn, test, challenger, champion, 0.95)
    assert overall.n == 1010 and overall.confidence == 0.95
    # premium has 10 rows, under min_slice_rows (30): not judged at all
    assert set(slices) == {"plan=basic", "plan=plus", "contract=monthly", "contract=annual"}
    assert all(c.confidence == pytest.approx(1 - 0.05 / 4) for c in slices.values())  # Bonferroni
    assert slices["plan=basic"].n == 500 and slices["contract=annual"].n == 505
    fewer = config_with(churn, min_slice_rows=501)
    assert set(paired_comparisons(fewer, test, challenger, champion, 0.95)[1]) == {
        "contract=monthly",
        "contract=annual",
    }


def slice_comparison(low: float, high: float) -> PairedComparison:
    return PairedComparison("roc_auc", "DeLong", 40, 0.72, 0.80, (low + high) / 2, low, high, 0.9875)


@pytest.mark.parametrize(
    ("low", "high", "outcome", "words"),
    [
        (-0.20, 0.04, "inconclusive", "cannot tell"),  # a drop of 0.08 the 40 rows cannot confirm
        (-0.12, -0.06, "reject", "even at the interval's best"),  # surely beyond max_slice_drop
        (-0.03, 0.01, "promote", "clears the threshold"),  # the interval rules the drop out
    ],
)
def test_a_slice_is_judged_on_its_interval_not_its_point_drop(
    churn: PipelineConfig, low: float, high: float, outcome: str, words: str
) -> None:
    overall = PairedComparison("roc_auc", "DeLong", 1000, 0.86, 0.80, 0.06, 0.04, 0.08, 0.95)
    decision = decide(
        churn,
        {"roc_auc": 0.86},
        {"plan=premium": {"roc_auc": 0.72}},
        {"roc_auc": 0.80},
        {"plan=premium": {"roc_auc": 0.80 if outcome != "promote" else 0.74}},
        champion_version="1",
        comparison=overall,
        slice_comparisons={"plan=premium": slice_comparison(low, high)},
    )
    assert decision.outcome == outcome, decision.summary
    assert words in decision.summary
    assert decision.slice_comparisons["plan=premium"]["high"] == high
