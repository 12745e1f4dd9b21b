"""The promotion gate: floor, margin over the champion, slice guard, in the metric's direction."""

from __future__ import annotations

import pytest

from include.ct.config import PipelineConfig
from include.ct.modeling.evaluate import decide


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
