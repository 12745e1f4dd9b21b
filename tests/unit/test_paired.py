"""The paired tests behind the gate on known cases: identical models never promote, a clearly
better one does, and the intervals cover the true difference as often as they claim."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from include.ct.config import PipelineConfig
from include.ct.modeling.evaluate import GateDecision, decide
from include.ct.modeling.metrics import Scores
from include.ct.modeling.paired import PairedComparison, compare


def binary_scores(probability_of_one: np.ndarray) -> Scores:
    probabilities = np.column_stack([1 - probability_of_one, probability_of_one])
    return Scores((probability_of_one > 0.5).astype(int), probabilities, [0, 1])


def two_models(
    rng: np.random.Generator, n: int, skill: tuple[float, float]
) -> tuple[np.ndarray, Scores, Scores]:
    """Labels and two correlated scorers; a larger ``skill`` separates the classes better."""
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n)
    scores = []
    for strength in skill:
        logit = strength * (2 * y - 1) + shared + rng.normal(size=n)
        scores.append(binary_scores(1 / (1 + np.exp(-logit))))
    return y, scores[0], scores[1]


def gate(config: PipelineConfig, paired: PairedComparison) -> GateDecision:
    """The gate's decision on the paired test alone (no slices, champion v1)."""
    return decide(
        config,
        {"roc_auc": paired.challenger},
        {},
        {"roc_auc": paired.champion},
        {},
        comparison=paired,
        champion_version="1",
    )


def test_delong_reproduces_the_aucs_and_identical_models_are_rejected(churn: PipelineConfig) -> None:
    rng = np.random.default_rng(1)
    y, a, b = two_models(rng, 800, (1.0, 0.8))
    result = compare("roc_auc", y, a, b, confidence=0.95)
    assert result.method == "DeLong" and result.n == 800
    assert result.challenger == pytest.approx(roc_auc_score(y, a.probabilities[:, 1]))  # type: ignore[index]
    assert result.champion == pytest.approx(roc_auc_score(y, b.probabilities[:, 1]))  # type: ignore[index]
    assert result.low < result.improvement < result.high

    same = compare("roc_auc", y, a, a, confidence=0.95)
    assert (same.improvement, same.low, same.high) == (0.0, 0.0, 0.0)
    decision = gate(churn, same)
    assert decision.outcome == "reject"


def test_a_tiny_difference_is_inconclusive_and_a_clear_one_promotes(churn: PipelineConfig) -> None:
    rng = np.random.default_rng(2)
    y, a, b = two_models(rng, 400, (1.02, 1.0))
    noisy = compare("roc_auc", y, a, b, confidence=0.95)
    decision = gate(churn, noisy)
    assert decision.outcome == "inconclusive", decision.summary
    assert not decision.promote and decision.inconclusive
    assert "straddles the margin" in decision.summary and "DeLong, n=400" in decision.summary

    y, a, b = two_models(rng, 5000, (1.5, 1.0))
    clear = compare("roc_auc", y, a, b, confidence=0.95)
    decision = gate(churn, clear)
    assert decision.outcome == "promote", decision.summary
    assert decision.comparison is not None and decision.comparison["low"] > 0


def test_a_rejecting_rule_outranks_an_inconclusive_one(churn: PipelineConfig) -> None:
    rng = np.random.default_rng(3)
    y, a, b = two_models(rng, 400, (1.02, 1.0))
    noisy = compare("roc_auc", y, a, b, confidence=0.95)
    below_floor = decide(
        churn, {"roc_auc": 0.5}, {}, {"roc_auc": 0.9}, {}, comparison=noisy, champion_version="1"
    )
    assert below_floor.outcome == "reject"


@pytest.mark.parametrize(("metric", "n"), [("roc_auc", 300), ("accuracy", 300), ("rmse", 200), ("f1", 300)])
def test_intervals_cover_the_true_difference_as_often_as_they_claim(metric: str, n: int) -> None:
    """Draw many held-out sets from one population; the 90% interval must contain the
    population's difference in about 90% of them."""
    rng = np.random.default_rng(4)

    def sample(size: int) -> tuple[np.ndarray, Scores, Scores]:
        if metric == "rmse":
            y = rng.normal(size=size)
            noise = rng.normal(size=size)
            return y, Scores(y + 0.9 * noise + 0.3 * rng.normal(size=size)), Scores(y + noise)
        return two_models(rng, size, (1.1, 0.9))

    truth = compare(metric, *sample(400_000), confidence=0.9, resamples=50)
    reps, covered = 120, 0
    for _ in range(reps):
        result = compare(metric, *sample(n), confidence=0.9, resamples=300)
        covered += result.low <= truth.improvement <= result.high
    assert 0.80 <= covered / reps <= 0.98, (metric, covered / reps, truth.improvement)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "log_loss"])
def test_two_different_models_of_equal_skill_are_almost_never_promoted(metric: str) -> None:
    """Not the same scores twice: two scorers with independent errors and the same skill. At 95%
    the interval's lower bound clears a zero margin by chance in about 2.5% of held-out sets."""
    rng = np.random.default_rng(9)
    reps, promoted = 200, 0
    for _ in range(reps):
        y, a, b = two_models(rng, 400, (1.0, 1.0))
        result = compare(metric, y, a, b, confidence=0.95, resamples=300)
        assert not np.array_equal(a.probabilities, b.probabilities)  # distinct models, not a copy
        promoted += result.low > 0
    assert promoted / reps <= 0.05, (metric, promoted)
