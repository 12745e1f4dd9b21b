"""Paired comparison of two models on the same rows: the improvement and its confidence interval.

The gate must not promote noise: a difference smaller than the held-out rows can resolve is not an
improvement. Both models are scored on the same rows, so the test is paired (each row's outcome
under both models), which is far tighter than comparing two independent estimates:

- ROC AUC (binary): DeLong's test, the variance of the difference of two correlated AUCs from
  their structural components (DeLong et al. 1988; the midrank algorithm of Sun and Xu 2014).
- accuracy: the paired difference of proportions on the discordant rows (the McNemar setting),
  with McNemar's exact binomial p-value.
- every other metric: a paired Poisson bootstrap (the same random row weights for both models),
  vectorised over per-row statistics so it stays fast on large held-out sets.

Improvements are in the metric's own units, signed so that positive is better.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import metric_higher_is_better
from include.ct.modeling.metrics import Scores

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_CHUNK = 50  # resamples weighted at once: bounds memory at CHUNK x rows floats
SEED = 20261206


@dataclass(frozen=True)
class PairedComparison:
    """How much better the challenger is than the champion on the same ``n`` rows, with the
    two-sided ``confidence`` interval of that improvement (positive = better)."""

    metric: str
    method: str
    n: int
    challenger: float
    champion: float
    improvement: float
    low: float
    high: float
    confidence: float
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """E.g. ``+0.0031 [-0.0012, +0.0074] (95% CI, DeLong, n=600)``."""
        return (
            f"{self.improvement:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"({self.confidence:.0%} CI, {self.method}, n={self.n})"
        )


def compare(
    metric: str,
    target: pd.Series | np.ndarray,
    challenger: Scores,
    champion: Scores,
    *,
    confidence: float,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = SEED,
) -> PairedComparison:
    """The paired improvement of ``challenger`` over ``champion`` on ``metric`` for these rows."""
    y = np.asarray(target)
    sign = 1.0 if metric_higher_is_better(metric) else -1.0
    z = _normal_quantile(0.5 + confidence / 2)
    if metric == "roc_auc" and _binary(challenger, champion):
        assert challenger.probabilities is not None and champion.probabilities is not None
        positive = y == (challenger.classes or [])[1]
        return _delong(positive, challenger.probabilities[:, 1], champion.probabilities[:, 1], z, confidence)
    if metric == "roc_auc":
        return _index_bootstrap_roc_auc(y, challenger, champion, confidence, max(resamples // 5, 100), seed)
    if metric == "accuracy":
        return _paired_proportions(y == challenger.predicted, y == champion.predicted, z, confidence)
    statistic = _per_row_statistic(metric, y, challenger, champion)
    return _poisson_bootstrap(metric, statistic, sign, confidence, resamples, seed)


def _binary(challenger: Scores, champion: Scores) -> bool:
    return (
        challenger.probabilities is not None
        and champion.probabilities is not None
        and len(challenger.classes or []) == 2
        and list(challenger.classes or []) == list(champion.classes or [])
    )


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


# --- DeLong ------------------------------------------------------------------------------------


def _midranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (1-based)."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(values, method="average"), dtype=float)


def _delong(
    positive: np.ndarray, challenger: np.ndarray, champion: np.ndarray, z: float, confidence: float
) -> PairedComparison:
    positives, negatives = int(positive.sum()), int((~positive).sum())
    n = len(positive)
    if positives == 0 or negatives == 0:
        return _undefined("roc_auc", "DeLong", n, confidence)
    aucs, v10, v01 = [], [], []
    for scores in (challenger, champion):
        pos, neg = scores[positive], scores[~positive]
        ranks_all = _midranks(np.concatenate([pos, neg]))
        ranks_pos, ranks_neg = _midranks(pos), _midranks(neg)
        auc = (ranks_all[:positives].sum() - positives * (positives + 1) / 2) / (positives * negatives)
        aucs.append(auc)
        v10.append((ranks_all[:positives] - ranks_pos) / negatives)  # per positive row
        v01.append(1.0 - (ranks_all[positives:] - ranks_neg) / positives)  # per negative row
    s10 = np.cov(np.vstack(v10)) if positives > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01)) if negatives > 1 else np.zeros((2, 2))
    covariance = s10 / positives + s01 / negatives
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    delta = float(aucs[0] - aucs[1])
    se = math.sqrt(max(variance, 0.0))
    p_value = _two_sided_p(delta, se)
    return PairedComparison(
        "roc_auc",
        "DeLong",
        n,
        float(aucs[0]),
        float(aucs[1]),
        delta,
        delta - z * se,
        delta + z * se,
        confidence,
        p_value,
    )


def _two_sided_p(delta: float, se: float) -> float:
    from scipy.stats import norm

    if se == 0:
        return 1.0 if delta == 0 else 0.0
    return float(2 * norm.sf(abs(delta) / se))


# --- accuracy: paired proportions ------------------------------------------------------------


def _paired_proportions(
    challenger_right: np.ndarray, champion_right: np.ndarray, z: float, confidence: float
) -> PairedComparison:
    """Accuracy difference from the discordant rows: only the challenger right (b), only the
    champion right (c). Interval: Wald for paired proportions; p-value: McNemar's exact test."""
    from scipy.stats import binomtest

    n = len(challenger_right)
    if n == 0:
        return _undefined("accuracy", "McNemar", 0, confidence)
    b = int(np.sum(challenger_right & ~champion_right))
    c = int(np.sum(~challenger_right & champion_right))
    delta = (b - c) / n
    variance = ((b + c) / n - delta**2) / n
    se = math.sqrt(max(variance, 0.0))
    p_value = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return PairedComparison(
        "accuracy",
        "McNemar",
        n,
        float(np.mean(challenger_right)),
        float(np.mean(champion_right)),
        delta,
        delta - z * se,
        delta + z * se,
        confidence,
        p_value,
    )


# --- everything else: paired Poisson bootstrap ------------------------------------------------


@dataclass(frozen=True)
class _RowStatistic:
    """Per-row columns whose weighted sums give the metric for both models (``value``)."""

    columns: np.ndarray  # rows x k
    value: Any  # (weighted column sums: chunk x k) -> (challenger values, champion values)


def _per_row_statistic(metric: str, y: np.ndarray, challenger: Scores, champion: Scores) -> _RowStatistic:
    if metric in ("rmse", "mae", "r2"):
        actual = y.astype(float)
        a, b = challenger.predicted.astype(float), champion.predicted.astype(float)
        if metric == "mae":
            cols = np.column_stack([np.ones_like(actual), np.abs(actual - a), np.abs(actual - b)])
            return _RowStatistic(cols, lambda s: (s[:, 1] / s[:, 0], s[:, 2] / s[:, 0]))
        cols = np.column_stack(
            [np.ones_like(actual), (actual - a) ** 2, (actual - b) ** 2, actual, actual**2]
        )
        if metric == "rmse":
            return _RowStatistic(cols, lambda s: (np.sqrt(s[:, 1] / s[:, 0]), np.sqrt(s[:, 2] / s[:, 0])))

        def r2(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            total = s[:, 4] - s[:, 3] ** 2 / s[:, 0]
            return 1 - s[:, 1] / total, 1 - s[:, 2] / total

        return _RowStatistic(cols, r2)
    if metric == "log_loss":
        losses = [_row_log_loss(y, scores) for scores in (challenger, champion)]
        cols = np.column_stack([np.ones(len(y)), *losses])
        return _RowStatistic(cols, lambda s: (s[:, 1] / s[:, 0], s[:, 2] / s[:, 0]))
    if metric in ("f1", "f1_macro"):
        return _f1_statistic(metric, y, challenger, champion)
    raise ValueError(f"no paired test for metric {metric!r}")


def _row_log_loss(y: np.ndarray, scores: Scores) -> np.ndarray:
    if scores.probabilities is None or scores.classes is None:
        raise ValueError("log_loss needs class probabilities")
    index = {label: i for i, label in enumerate(scores.classes)}
    columns = np.array([index.get(label, -1) for label in y])
    probability = np.where(columns >= 0, scores.probabilities[np.arange(len(y)), np.maximum(columns, 0)], 0.0)
    return np.asarray(-np.log(np.clip(probability, 1e-15, 1.0)), dtype=float)


def _f1_statistic(metric: str, y: np.ndarray, challenger: Scores, champion: Scores) -> _RowStatistic:
    """F1 from weighted tp/fp/fn counts per class, averaged as ``metrics`` does: the positive
    class (binary f1), support-weighted (multiclass f1) or unweighted (f1_macro)."""
    classes = list(challenger.classes or sorted(set(y.tolist())))
    judged = [classes[1]] if metric == "f1" and len(classes) == 2 else classes
    weighted = metric == "f1" and len(classes) != 2
    cols = []
    for scores in (challenger, champion):
        for label in judged:
            predicted, actual = scores.predicted == label, y == label
            cols.extend([predicted & actual, predicted & ~actual, ~predicted & actual])
    columns = np.column_stack(cols).astype(float)
    k = len(judged)

    def f1(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = []
        for model in range(2):
            scores_, supports = [], []
            for i in range(k):
                tp, fp, fn = (s[:, (model * k + i) * 3 + j] for j in range(3))
                denominator = 2 * tp + fp + fn
                scores_.append(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0))
                supports.append(tp + fn)
            per_class, support = np.array(scores_), np.array(supports)
            if weighted:
                total = support.sum(axis=0)
                values.append(
                    np.divide(
                        (per_class * support).sum(axis=0), total, out=np.zeros_like(total), where=total > 0
                    )
                )
            else:
                values.append(per_class.mean(axis=0))
        return values[0], values[1]

    return _RowStatistic(columns, f1)


def _index_bootstrap_roc_auc(
    y: np.ndarray, challenger: Scores, champion: Scores, confidence: float, resamples: int, seed: int
) -> PairedComparison:
    """Multiclass one-vs-rest ROC AUC has no per-row decomposition: resample rows, rescore."""
    from sklearn.metrics import roc_auc_score

    n = len(y)
    if challenger.probabilities is None or champion.probabilities is None or len(set(y.tolist())) < 2:
        return _undefined("roc_auc", "paired bootstrap", n, confidence)
    classes = list(challenger.classes or [])

    def auc(rows: np.ndarray, scores: Scores) -> float:
        return float(roc_auc_score(y[rows], scores.probabilities[rows], multi_class="ovr", labels=classes))  # type: ignore[index]

    everything = np.arange(n)
    a, b = auc(everything, challenger), auc(everything, champion)
    rng = np.random.default_rng(seed)
    improvements = []
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        if len(set(y[rows].tolist())) == len(classes):
            improvements.append(auc(rows, challenger) - auc(rows, champion))
    if not improvements:
        return _undefined("roc_auc", "paired bootstrap", n, confidence)
    return _from_bootstrap("roc_auc", n, a, b, a - b, np.array(improvements), confidence)


def _poisson_bootstrap(
    metric: str, statistic: _RowStatistic, sign: float, confidence: float, resamples: int, seed: int
) -> PairedComparison:
    n = len(statistic.columns)
    if n == 0:
        return _undefined(metric, "paired bootstrap", 0, confidence)
    full = statistic.columns.sum(axis=0, keepdims=True)
    challenger, champion = (float(v[0]) for v in statistic.value(full))
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        weights = rng.poisson(1.0, size=(min(BOOTSTRAP_CHUNK, resamples - start), n)).astype(float)
        a, b = statistic.value(weights @ statistic.columns)
        deltas.append(sign * (a - b))
    improvements = np.concatenate(deltas)
    improvements = improvements[np.isfinite(improvements)]
    if len(improvements) == 0:
        return _undefined(metric, "paired bootstrap", n, confidence)
    return _from_bootstrap(
        metric, n, challenger, champion, sign * (challenger - champion), improvements, confidence
    )


def _from_bootstrap(
    metric: str,
    n: int,
    challenger: float,
    champion: float,
    improvement: float,
    draws: np.ndarray,
    confidence: float,
) -> PairedComparison:
    """Percentile interval of the bootstrap improvements; p-value from the share on either side of 0."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    share_not_better = float(np.mean(draws <= 0))
    p_value = min(1.0, 2 * min(share_not_better, 1 - share_not_better))
    return PairedComparison(
        metric,
        "paired bootstrap",
        n,
        challenger,
        champion,
        improvement,
        float(low),
        float(high),
        confidence,
        p_value,
    )


def _undefined(metric: str, method: str, n: int, confidence: float) -> PairedComparison:
    nan = math.nan
    return PairedComparison(metric, method, n, nan, nan, nan, nan, nan, confidence, None)
