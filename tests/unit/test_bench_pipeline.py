"""The pure parts of the pipeline benchmark: growth exponent, result merging, the workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import workload
from bench.pipeline import growth_exponent, merge_results
from include.ct.config import load_pipeline_config
from include.ct.modeling.pipeline_building import build_pipeline, coerce_to_schema
from include.ct.modeling.train import fit_pipeline, training_matrix


def test_growth_exponent_of_linear_and_quadratic_growth() -> None:
    assert growth_exponent({1_000_000: 10.0, 5_000_000: 50.0, 10_000_000: 100.0}) == pytest.approx(1.0)
    assert growth_exponent({1_000: 1.0, 10_000: 100.0}) == pytest.approx(2.0)
    assert growth_exponent({1_000: 1.0}) is None
    assert growth_exponent({1_000: 0.0, 2_000: 0.0}) is None


def test_merge_keeps_the_other_section_and_drops_the_machine() -> None:
    existing = {"machine": {"cpus": 2}, "floor": {"pipeline": "churn"}, "scale": {"features": 1}}
    merged = merge_results(existing, "scale", {"features": 24})
    assert merged == {"floor": {"pipeline": "churn"}, "scale": {"features": 24, "sizes": {}}}
    assert merge_results({}, "floor", {"sizes": {}}) == {"floor": {"sizes": {}}}


def test_merge_keeps_sizes_measured_earlier_and_refits_growth() -> None:
    def size(seconds: float) -> dict[str, object]:
        return {"total_s": {"median": seconds}, "stages": {"train": {"seconds": {"median": seconds}}}}

    earlier = {"scale": {"features": 24, "sizes": {"10000000": size(100.0), "1000000": size(1.0)}}}
    later = {"features": 24, "sizes": {"1000000": size(10.0)}, "growth_exponent": {}}
    merged = merge_results(earlier, "scale", later)["scale"]
    assert list(merged["sizes"]) == ["1000000", "10000000"]
    assert merged["sizes"]["1000000"]["total_s"]["median"] == 10.0
    assert merged["growth_exponent"] == {"total": pytest.approx(1.0), "train": pytest.approx(1.0)}


def test_workload_config_is_a_valid_wide_pipeline(tmp_path: Path) -> None:
    config = load_pipeline_config(workload.write_config(tmp_path))
    assert config.name == workload.NAME
    assert len(config.features) >= 24
    types = {spec.type for spec in config.features.values()}
    assert types == {"float", "integer", "category", "boolean"}
    assert any(spec.nullable for spec in config.features.values())
    frame = workload.generate(2000, seed=1)
    assert list(frame.columns) == [*config.features, config.target]
    assert set(frame[config.target].unique()) == {0, 1}
    assert frame[[n for n, s in config.features.items() if s.nullable]].isna().any().all()


def test_workload_batches_are_written_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    monkeypatch.setattr(workload, "CHUNK_ROWS", 700)
    path = workload.write_batch(tmp_path, 2000, seed=3)
    assert len(pd.read_parquet(path)) == 2000


def test_training_matrix_holds_fit_and_validation_rows_once(tmp_path: Path) -> None:
    config = load_pipeline_config(workload.write_config(tmp_path))
    config = config.model_copy(update={"model": config.model.model_copy(update={"params": {"max_iter": 5}})})
    train = coerce_to_schema(config, workload.generate(12_000, seed=2))
    data = training_matrix(config, build_pipeline(config), train)
    assert data.x_val is not None
    assert len(data.x) + len(data.x_val) == len(train)
    assert data.x.shape[1] == len(config.features)
    assert data.x.flags.c_contiguous and data.x.dtype == np.float64
    model = fit_pipeline(config, build_pipeline(config), train)
    assert model.predict_proba(train[config.feature_names].head(10)).shape == (10, 2)
