"""Records the deploy step sends to the service: what the offline test set holds, as the API takes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.modeling.pipeline_building import coerce_to_schema
from include.ct.registry.deploy import held_out_records
from include.ct.registry.served_model import json_records
from include.ct_serving.schema import record_model
from tools import datagen


def test_integer_features_with_missing_values_go_out_as_integers(churn: PipelineConfig) -> None:
    spec = churn.features["support_calls"].model_copy(update={"nullable": True})
    config = churn.model_copy(update={"features": {**churn.features, "support_calls": spec}})
    frame = coerce_to_schema(config, datagen.churn_batch(20, day=1))
    frame["support_calls"] = frame["support_calls"].astype("float64")  # how Parquet keeps it with NaN
    frame.loc[frame.index[0], "support_calls"] = np.nan

    records = json_records(config, frame)

    assert records[0]["support_calls"] is None
    assert all(isinstance(r["support_calls"], int) for r in records[1:])
    model = record_model(config)
    for record in records:
        model.model_validate(record)  # the service's strict schema accepts every one


def test_nan_in_any_feature_becomes_null(churn: PipelineConfig) -> None:
    frame = coerce_to_schema(churn, datagen.churn_batch(5, day=1))
    numeric = next(name for name, spec in churn.features.items() if spec.type == "float")
    frame.loc[frame.index[2], numeric] = np.nan
    assert json_records(churn, pd.DataFrame(frame))[2][numeric] is None


def test_held_out_records_are_the_files_first_rows(churn: PipelineConfig, tmp_path: Path) -> None:
    """The deploy checks share one read of the held-out file: its first rows, in order."""
    frame = coerce_to_schema(churn, datagen.churn_batch(50, day=1))
    path = tmp_path / "test.parquet"
    frame.to_parquet(path)

    records = held_out_records(churn, str(path), 20)

    assert records == json_records(churn, pd.read_parquet(path).head(20))
    assert held_out_records(churn, str(path), 500) == json_records(churn, pd.read_parquet(path))
