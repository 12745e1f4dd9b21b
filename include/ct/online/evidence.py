"""Live evidence on a staged challenger: its predictions and the champion's on the same requests,
joined with the labels that arrived for them.

Under shadow the challenger scores requests the champion answers; under canary the champion
scores the requests the challenger answers. Either way both versions predicted every compared
row, so the comparison is paired on the prediction id, as the offline gate's is on held-out rows.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.modeling.metrics import Scores
from include.ct.modeling.paired import PairedComparison, compare
from include.ct.monitoring.monitor import read_labels
from include.ct.monitoring.prediction_log import read_prediction_log

log = logging.getLogger(__name__)

NEEDS_PROBABILITIES = ("roc_auc", "log_loss")


@dataclass(frozen=True)
class LiveEvidence:
    """What the prediction log and the labels say about challenger vs champion so far."""

    metric: str
    challenger_rows: int  # predictions of the challenger logged since staging
    paired_rows: int  # requests both versions predicted
    labelled_pairs: int  # of those, the ones with a label
    unmatched_labels: int  # labels whose id matches no paired prediction (counted, ignored)
    comparison: PairedComparison | None

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["comparison"] = self.comparison.to_dict() if self.comparison else None
        return body


def live_metric_name(config: PipelineConfig, binary: bool) -> str:
    """The metric live evidence is judged on: the pipeline's, unless the log cannot compute it.

    The log keeps one score per prediction (the positive class's probability for binary models),
    so a multiclass pipeline judged on ROC AUC or log loss is compared on accuracy online.
    """
    if config.task == "classification" and config.metric in NEEDS_PROBABILITIES and not binary:
        return "accuracy"
    return config.metric


def _scores(config: PipelineConfig, rows: pd.DataFrame, classes: list[Any] | None) -> Scores:
    if config.task == "regression":
        return Scores(rows["prediction"].to_numpy(dtype=float))
    predicted = rows["prediction"].astype(str).to_numpy()
    if classes is not None and len(classes) == 2 and "score" in rows.columns:
        positive = rows["score"].to_numpy(dtype=float)
        return Scores(predicted, np.column_stack([1 - positive, positive]), classes)
    return Scores(predicted, None, classes)


def gather(
    config: PipelineConfig,
    *,
    challenger: str,
    champion: str,
    since: datetime,
    confidence: float,
) -> LiveEvidence:
    """Pair the two versions' logged predictions since ``since`` and compare them on labelled rows."""
    logged = read_prediction_log(config.name, since=since, shadow=True)
    if logged.empty:
        return LiveEvidence(config.metric, 0, 0, 0, 0, None)
    logged = logged.drop_duplicates(["prediction_id", "model_version"], keep="last")
    mine = logged[logged["model_version"].astype(str) == challenger]
    theirs = logged[logged["model_version"].astype(str) == champion]
    keep = [c for c in ("prediction_id", "prediction", "score") if c in logged.columns]
    pairs = mine[keep].merge(theirs[keep], on="prediction_id", suffixes=("_challenger", "_champion"))
    labels = read_labels(config, since=since)
    labelled = pairs.merge(labels, on="prediction_id", how="inner")
    unmatched = int((~labels["prediction_id"].isin(pairs["prediction_id"])).sum()) if len(labels) else 0
    if labelled.empty:
        return LiveEvidence(config.metric, len(mine), len(pairs), 0, unmatched, None)

    target = labelled[config.target]
    classes: list[Any] | None = None
    if config.task == "classification":
        native = pd.concat(
            [target, labelled["prediction_challenger"], labelled["prediction_champion"]], ignore_index=True
        )
        classes = [str(value) for value in sorted(native.dropna().unique().tolist())]
    binary = classes is not None and len(classes) == 2
    metric = live_metric_name(config, binary)
    if metric in ("roc_auc", "f1") and target.nunique() < 2:  # undefined until both classes are labelled
        return LiveEvidence(metric, len(mine), len(pairs), len(labelled), unmatched, None)

    def side(suffix: str) -> pd.DataFrame:
        columns = {f"{name}_{suffix}": name for name in ("prediction", "score")}
        return labelled.rename(columns=columns)

    comparison = compare(
        metric,
        target.astype(str).to_numpy() if config.task == "classification" else target.to_numpy(dtype=float),
        _scores(config, side("challenger"), classes),
        _scores(config, side("champion"), classes),
        confidence=confidence,
    )
    return LiveEvidence(metric, len(mine), len(pairs), len(labelled), unmatched, comparison)
