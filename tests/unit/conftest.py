"""Unit-test fixtures: the churn config and a private data folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.ct.config import BUNDLED_PIPELINES_DIR, PipelineConfig, load_pipeline_config


@pytest.fixture
def churn() -> PipelineConfig:
    return load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("CT_DATA_DIR", str(path))
    monkeypatch.delenv("CT_ARTIFACTS_DIR", raising=False)
    return path
