"""Value skew: per-feature Population Stability Index of new data against a training reference.

The reference profile is saved with every trained model, so drift is always measured against
what the serving champion actually learned from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.monitoring.prediction_log import SAMPLE_WEIGHT as WEIGHT_COLUMN

if TYPE_CHECKING:
    from include.ct.data.extract import Snapshot

BINS = 10
EPSILON = 1e-4


def reference_profile(config: PipelineConfig, frame: pd.DataFrame) -> dict[str, Any]:
    """Per-feature distribution summary of a training set (quantile bins or category shares)."""
    profile: dict[str, Any] = {"rows": len(frame), "features": {}}
    for name, spec in config.features.items():
        column = frame[name]
        if spec.is_numeric:
            values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)))
            shares = numeric_shares(values, edges)
            profile["features"][name] = {
                "kind": "numeric",
                "edges": edges.tolist(),
                "shares": shares.tolist(),
            }
        else:
            shares_series = column.astype(str).value_counts(normalize=True)
            profile["features"][name] = {
                "kind": "categorical",
                "shares": {str(k): float(v) for k, v in shares_series.items()},
            }
    return profile


def numeric_shares(values: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Share of ``values`` (each counted ``weights`` times, when given) in each bin of ``edges``."""
    if edges.size < 2:
        return np.array([1.0])
    inner = edges[1:-1]
    bins = np.searchsorted(inner, values, side="right")
    counts = np.bincount(bins, weights=weights, minlength=edges.size - 1)
    total = float(weights.sum()) if weights is not None else float(values.size)
    shares: np.ndarray = counts / max(total, 1e-12)
    return shares


def row_weights(frame: pd.DataFrame) -> pd.Series:
    """Each row's weight: 1/share of a sampled prediction log (``sample_weight``), else 1."""
    if WEIGHT_COLUMN in frame.columns:
        return pd.to_numeric(frame[WEIGHT_COLUMN], errors="coerce").fillna(1.0)
    return pd.Series(1.0, index=frame.index)


def numeric_values(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column's non-missing values and their row weights."""
    values = pd.to_numeric(frame[name], errors="coerce")
    present = values.notna()
    return values[present].to_numpy(dtype=float), row_weights(frame)[present].to_numpy(dtype=float)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population Stability Index between two share vectors (0 = identical)."""
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_drift(profile: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of every profiled feature of ``frame`` against the reference ``profile``."""
    scores: dict[str, float] = {}
    for name, ref in profile.get("features", {}).items():
        if name not in frame.columns:
            continue
        if ref["kind"] == "numeric":
            values, weights = numeric_values(frame, name)
            if values.size == 0:
                continue
            actual = numeric_shares(values, np.asarray(ref["edges"]), weights)
            scores[name] = psi(np.asarray(ref["shares"]), actual)
        else:
            labels = frame[name].astype(str)  # missing values stay missing, as in the reference
            weights = row_weights(frame)[labels.notna()]
            if weights.empty:
                continue
            actual_series = weights.groupby(labels[labels.notna()]).sum() / weights.sum()
            categories = sorted(set(ref["shares"]) | {str(k) for k in actual_series.index})
            expected = np.array([ref["shares"].get(c, 0.0) for c in categories])
            actual_shares = {str(k): float(v) for k, v in actual_series.items()}
            scores[name] = psi(expected, np.array([actual_shares.get(c, 0.0) for c in categories]))
    return scores


def drifted_features(scores: dict[str, float], threshold: float) -> list[str]:
    """Features whose PSI exceeds ``threshold``, worst first."""
    return [name for name, value in sorted(scores.items(), key=lambda kv: -kv[1]) if value > threshold]


def read_features(config: PipelineConfig, parts: list[str]) -> pd.DataFrame:
    """The feature columns of every Parquet part as one frame: the only copy drift needs.

    Built a column at a time, so besides the result only one column's parts are held, never
    the whole batches plus their concatenation.
    """
    features = list(config.features)
    if not parts:
        return pd.DataFrame(columns=features)
    columns = [
        pd.concat([pd.read_parquet(part, columns=[name])[name] for part in parts], ignore_index=True)
        for name in features
    ]
    return pd.concat(columns, axis=1)


def snapshot_value_skew(config: PipelineConfig, snapshot: Snapshot) -> dict[str, Any]:
    """PSI of a snapshot's features against the champion's training reference, read lean."""
    parts = [f"{snapshot.path}/{batch.part}" for batch in snapshot.batches if batch.part]
    return value_skew_against_champion(config, read_features(config, parts))


def value_skew_against_champion(config: PipelineConfig, frame: pd.DataFrame) -> dict[str, Any]:
    """PSI of ``frame`` against the serving champion's training reference (recorded, not gating)."""
    from include.ct.registry import registry

    champion = registry.get_champion(config)
    if champion is None or not champion.run_id:
        return {"champion": None, "psi": {}, "drifted": []}
    profile = registry.download_json(champion.run_id, "reference/profile.json")
    if not profile:
        return {"champion": champion.version, "psi": {}, "drifted": []}
    scores = feature_drift(profile, frame)
    return {
        "champion": champion.version,
        "psi": {name: round(value, 4) for name, value in scores.items()},
        "drifted": drifted_features(scores, config.validation.drift_threshold),
    }
