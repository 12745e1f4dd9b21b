"""A pipeline whose source is a PostgreSQL table: each run extracts exactly its data interval."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from include.ct.config import find_pipeline_config
from include.ct.data.extract import extract, land_sql_window, sql_window
from include.ct.storage import pipeline_paths
from testbed.services import REPO_ROOT, MlflowServer, PostgresDatabase, copy_config
from tests.helpers.airflow_runs import run_dag
from tools import datagen

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

SOURCE = """source:
  type: sql
  conn_id: ct_events
  query: >
    SELECT * FROM churn_events WHERE event_time >= :start AND event_time < :end
"""
DAY = {n: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n) for n in range(5)}


@pytest.fixture
def events_db(
    postgres_database: PostgresDatabase, tmp_path: Path, data_dir: Path
) -> Iterator[sqlalchemy.Engine]:
    """Three days of churn events in PostgreSQL and a `warehouse` pipeline reading them."""
    engine = sqlalchemy.create_engine(postgres_database.url)
    frames = [datagen.churn_batch(400, day=day).drop(columns=["customer_id"]) for day in (1, 2, 3)]
    pd.concat(frames).to_sql("churn_events", engine, index=False)
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path,
        **{"name: churn": "name: warehouse", "source:\n  type: files\n  path: landing/churn\n": SOURCE},
    )
    saved = {key: os.environ.get(key) for key in ("CT_PIPELINES_DIR", "AIRFLOW_CONN_CT_EVENTS")}
    os.environ["CT_PIPELINES_DIR"] = str(tmp_path)
    os.environ["AIRFLOW_CONN_CT_EVENTS"] = postgres_database.url.replace("postgresql+psycopg2", "postgres")
    try:
        yield engine
    finally:
        engine.dispose()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_extract_reads_only_the_window_and_never_twice(
    events_db: sqlalchemy.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_DATA_DIR", str(tmp_path / "own-data"))
    config = find_pipeline_config("warehouse")
    assert config.source.type == "sql"
    landed = land_sql_window(config, events_db, DAY[2], DAY[3])
    assert landed is not None
    rows = pd.read_parquet(landed)
    assert len(rows) == 400
    assert rows["event_time"].min() >= DAY[2] and rows["event_time"].max() < DAY[3]
    assert land_sql_window(config, events_db, DAY[2], DAY[3]) is None  # already landed
    snapshot = extract(config)
    assert snapshot.rows == 400
    assert land_sql_window(config, events_db, DAY[4], DAY[4] + timedelta(days=1)) is None  # no rows
    # Without a data interval (a manual run) the window starts where the last one ended.
    assert sql_window(config, None, None, DAY[4]) == (DAY[4] + timedelta(days=1), DAY[4] + timedelta(days=1))
    assert pipeline_paths(config).landing.exists()


def test_scheduled_dag_run_trains_on_its_interval_only(
    events_db: sqlalchemy.Engine, mlflow_server: MlflowServer
) -> None:
    # The daily run at DAY[3] covers the day before it: [DAY[2], DAY[3]).
    result = run_dag("ct_warehouse", logical_date=DAY[3])
    assert result.state == "success", result.tasks
    snapshot = result.xcom["extract"]
    assert sum(batch["rows"] for batch in snapshot["batches"]) == 400
    assert [batch["file"] for batch in snapshot["batches"]] == ["sql_20260103T000000_20260104T000000.parquet"]
    assert result.tasks["deploy"] == "success"
