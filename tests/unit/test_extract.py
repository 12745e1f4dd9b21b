"""Extract: content-hashed, immutable, idempotent snapshots of the landing zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.data.extract import NoNewDataError, extract, land_sql_window, pending_batches
from include.ct.storage import pipeline_paths
from tools import datagen


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


def test_sql_window_lands_once_and_is_snapshotted_like_a_file(churn: PipelineConfig, tmp_path: Path) -> None:
    """The SQL source lands its interval as a batch: rows outside it are not read, a second
    extraction of the same window reads nothing, and the batch is snapshotted like a file."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    rows = datagen.churn_batch(day=1, rows=40).drop(columns=["customer_id"], errors="ignore")
    rows["event_time"] = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(0, 80, 2)]
    rows.to_sql("events", engine, index=False)
    sql = churn.model_copy(
        update={
            "source": churn.source.model_copy(
                update={
                    "type": "sql",
                    "conn_id": "events_db",
                    "query": "SELECT * FROM events WHERE event_time >= :start AND event_time < :end",
                }
            )
        }
    )
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    landed = land_sql_window(sql, engine, start, end)
    assert landed is not None and landed.name == "sql_20260101T000000_20260102T000000.parquet"
    assert len(pd.read_parquet(landed)) == 12  # one row every 2 h inside the 24 h window
    assert land_sql_window(sql, engine, start, end) is None  # already landed: not read twice
    later = land_sql_window(sql, engine, end, end + timedelta(days=1))  # a second window waits
    assert later is not None
    # A backfill run takes only its own window, even with another one waiting beside it.
    snapshot = extract(sql, only=[landed.name])
    assert [b.file for b in snapshot.batches] == [landed.name]
    assert snapshot.rows == 12
