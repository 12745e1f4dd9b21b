"""monitoring.log_sample: a sampled prediction log, and monitor statistics weighted back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.monitoring.drift import feature_drift, reference_profile
from include.ct.monitoring.monitor import ks_statistic, live_metric
from include.ct.monitoring.prediction_log import SHADOW, PredictionLog, read_prediction_log
from tools import datagen


def test_a_sampled_log_keeps_both_versions_of_the_same_requests(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_seconds=0.05)
    log.start()
    ids = [f"req-{i}" for i in range(4000)]
    rows = [{"x": i} for i in range(4000)]
    now = datetime.now(UTC)
    log.append("churn", "1", now, rows, ids, [0] * 4000, None, sample=0.25)
    log.append("churn", "2", now, rows, ids, [1] * 4000, None, role=SHADOW, sample=0.25)
    log.close()
    logged = read_prediction_log("churn", tmp_path, shadow=True)
    served = logged[logged["model_version"] == "1"]
    assert 800 < len(served) < 1200  # about a quarter
    assert set(served["sample_weight"]) == {4.0}
    shadow = logged[logged["model_version"] == "2"]
    assert sorted(shadow["prediction_id"]) == sorted(served["prediction_id"])  # paired requests stay paired


def test_weighted_drift_equals_drift_of_the_rows_the_weights_stand_for(churn: PipelineConfig) -> None:
    reference = datagen.churn_batch(3000, day=1)
    profile = reference_profile(churn, reference)
    traffic = datagen.churn_batch(600, day=2, drift=0.7)
    weights = np.where(traffic["plan"] == "basic", 3.0, 1.0)
    expanded = traffic.loc[traffic.index.repeat(weights.astype(int))]
    weighted = traffic.assign(sample_weight=weights)

    assert feature_drift(profile, weighted) == pytest.approx(feature_drift(profile, expanded))
    assert ks_statistic(profile, weighted, "tenure_months") == pytest.approx(
        ks_statistic(profile, expanded, "tenure_months")
    )


def test_live_quality_is_weighted_by_the_sample(churn: PipelineConfig) -> None:
    joined = pd.DataFrame(
        {"churned": [1, 0, 1, 0], "prediction": [1, 0, 0, 1], "score": [0.9, 0.2, 0.4, 0.6]}
    )
    accuracy = churn.model_copy(update={"metric": "accuracy"})
    assert live_metric(accuracy, joined) == 0.5
    assert live_metric(accuracy, joined.assign(sample_weight=[3.0, 1.0, 1.0, 1.0])) == 4 / 6
