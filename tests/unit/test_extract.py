"""Extract: content-hashed, immutable, idempotent snapshots of the landing zone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from include.ct import datagen
from include.ct.config import PipelineConfig
from include.ct.extract import NoNewDataError, extract, pending_batches
from include.ct.storage import pipeline_paths


def test_no_batches_raises_unless_forced_with_accepted_data(churn: PipelineConfig) -> None:
    with pytest.raises(NoNewDataError, match="no new batch"):
        extract(churn)
    with pytest.raises(NoNewDataError, match="no accepted data"):
        extract(churn, force=True)


def test_snapshot_is_content_addressed_and_reused(churn: PipelineConfig) -> None:
    datagen.write_batch(churn, rows=200)
    datagen.write_batch(churn, rows=150, fmt="parquet")
    first = extract(churn)
    second = extract(churn)
    assert first.data_version == second.data_version
    assert [b.file for b in first.batches] == ["day_0001.csv", "day_0002.parquet"]
    assert first.rows == 350
    parts = sorted((Path(first.path) / "parts").iterdir())
    assert len(parts) == 2
    assert len(pd.read_parquet(parts[0])) == 200
    # Different content, different version.
    datagen.write_batch(churn, rows=10)
    assert extract(churn).data_version != first.data_version


def test_partial_uploads_are_ignored(churn: PipelineConfig) -> None:
    landing = pipeline_paths(churn).landing
    landing.mkdir(parents=True)
    (landing / ".day_0009.csv.partial").write_text("a,b\n1,2\n")
    (landing / "notes.txt").write_text("hello")
    assert pending_batches(churn) == []


def test_unreadable_file_is_recorded_not_fatal(churn: PipelineConfig) -> None:
    landing = pipeline_paths(churn).landing
    landing.mkdir(parents=True)
    (landing / "day_0001.parquet").write_bytes(b"PAR1 this is not parquet")
    snapshot = extract(churn)
    assert snapshot.batches[0].read_error
    assert snapshot.batches[0].part is None


def test_sql_source_is_refused_clearly(churn: PipelineConfig) -> None:
    sql = churn.model_copy(
        update={"source": churn.source.model_copy(update={"type": "sql", "conn_id": "x", "query": "q"})}
    )
    with pytest.raises(NotImplementedError, match=r"source\.type 'sql'"):
        extract(sql)
