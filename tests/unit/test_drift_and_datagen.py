"""Drift scores and the example data generator."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.monitoring.drift import drifted_features, feature_drift, read_features, reference_profile
from tools import datagen


def test_generator_is_seeded_and_realistic() -> None:
    first = datagen.churn_batch(500, day=3, seed=1)
    again = datagen.churn_batch(500, day=3, seed=1)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(datagen.churn_batch(500, day=4, seed=1))
    assert 0.1 < first["churned"].mean() < 0.6
    assert first["monthly_fee"].isna().any()


def test_psi_flags_drifted_features_only(churn: PipelineConfig) -> None:
    reference = reference_profile(churn, datagen.churn_batch(3000, day=1))
    same = feature_drift(reference, datagen.churn_batch(3000, day=2))
    assert max(same.values()) < 0.1
    drifted = feature_drift(reference, datagen.churn_batch(3000, day=2, drift=1.0))
    flagged = drifted_features(drifted, churn.validation.drift_threshold)
    assert "support_calls" in flagged
    assert "region" not in flagged


def test_next_day_counts_every_folder(churn: PipelineConfig) -> None:
    assert datagen.next_day(churn) == 1
    datagen.write_batch(churn, rows=10)
    datagen.write_batch(churn, rows=10, day=7)
    assert datagen.next_day(churn) == 8


def test_read_features_reads_only_the_features_of_every_part(churn: PipelineConfig, tmp_path: Path) -> None:
    parts = []
    for day in (1, 2):
        path = tmp_path / f"part-{day}.parquet"
        datagen.churn_batch(50, day=day).to_parquet(path)
        parts.append(str(path))
    frame = read_features(churn, parts)
    assert list(frame.columns) == list(churn.features) and len(frame) == 100
    assert read_features(churn, []).empty
