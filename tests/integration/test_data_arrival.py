"""Data arrival and backfill through a real scheduler, triggerer, dag-processor and api-server.

One Airflow deployment (LocalExecutor; metadata and MLflow's backend on PostgreSQL) serves two
pipelines: ``arrivals`` watches its
landing zone for files, ``warehouse`` watches a PostgreSQL table for new rows and is backfilled
over a date range with ``airflow backfill create``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy

from include.ct.config import find_pipeline_config
from include.ct.data.extract import sql_watermark
from include.ct.storage import pipeline_paths
from testbed.airflow_stack import AirflowStack, airflow_stack
from testbed.services import REPO_ROOT, MlflowServer, copy_config, throwaway_database
from tools import datagen

pytestmark = pytest.mark.integration

CHURN = REPO_ROOT / "include/pipelines/churn.yaml"
FAST_WATCH = "  poll_seconds: 2\n  settle_seconds: 1\n"
SQL_SOURCE = """source:
  type: sql
  conn_id: ct_events
  query: >
    SELECT * FROM warehouse.churn_events WHERE event_time >= :start AND event_time < :end
  poll_seconds: 2
"""
EVENT_DAYS = (1, 2, 3)  # history: 2026-01-02 .. 2026-01-04, 300 rows each


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_mlflow: MlflowServer) -> Iterator[AirflowStack]:
    tmp_path = tmp_path_factory.mktemp("arrival")
    pipelines = tmp_path / "pipelines"
    copy_config(
        CHURN,
        pipelines,
        "arrivals.yaml",
        **{
            "name: churn": "name: arrivals",
            "landing/churn": "landing/arrivals",
            'schedule: "@daily"': "schedule: null",  # only data arrival starts runs here
            "  path: landing/arrivals\n": "  path: landing/arrivals\n" + FAST_WATCH,
        },
    )
    copy_config(
        CHURN,
        pipelines,
        "warehouse.yaml",
        **{
            "name: churn": "name: warehouse",
            "source:\n  type: files\n  path: landing/churn\n": SQL_SOURCE,
        },
    )
    with throwaway_database() as database, pytest.MonkeyPatch.context() as patch:
        env = {
            "CT_PIPELINES_DIR": str(pipelines),
            "CT_DATA_DIR": str(tmp_path / "data"),
            "MLFLOW_TRACKING_URI": postgres_mlflow.url,  # MLflow's backend on PostgreSQL too
            "AIRFLOW_CONN_CT_EVENTS": database.url.replace("postgresql+psycopg2", "postgres"),
        }
        for key, value in env.items():
            patch.setenv(key, value)
        engine = sqlalchemy.create_engine(database.url)
        with engine.begin() as connection:  # an empty source table: the watcher sees no rows yet
            connection.execute(sqlalchemy.text("CREATE SCHEMA warehouse"))
        _events(0).head(0).to_sql("churn_events", engine, schema="warehouse", index=False)
        engine.dispose()
        with airflow_stack(database, tmp_path / "airflow", env) as running:
            yield running


def _events(day: int) -> pd.DataFrame:
    return datagen.churn_batch(300, day=day).drop(columns=["customer_id"])


def _finished(stack: AirflowStack, dag_id: str) -> list[tuple[str, str, str]]:
    return [run for run in stack.runs(dag_id) if run[1] in ("success", "failed")]


def _note(stack: AirflowStack, dag_id: str, run_id: str) -> str:
    rows = stack.query(
        "SELECT n.content FROM dag_run_note n JOIN dag_run r ON r.id = n.dag_run_id "
        "WHERE r.dag_id = %s AND r.run_id = %s",
        dag_id,
        run_id,
    )
    return str(rows[0][0]) if rows else ""


def test_a_dropped_batch_leads_to_exactly_one_run_that_consumes_it(stack: AirflowStack) -> None:
    config = find_pipeline_config("arrivals")
    assert config.source.poll_seconds == 2
    stack.wait_for_dag("ct_arrivals")
    stack.cli("dags", "unpause", "ct_arrivals")
    stack.wait_for_watcher("ct_arrivals")
    assert stack.runs("ct_arrivals") == []
    batch = datagen.write_batch(config, rows=2000)

    stack.wait_for_runs("ct_arrivals", 1)
    time.sleep(8)  # a second announcement would show up within a few polls
    runs = stack.runs("ct_arrivals")
    assert [(state, run_type) for _, state, run_type in runs] == [("success", "asset_triggered")], (
        runs,
        stack.logs(),
    )
    run_id = runs[0][0]
    snapshot = stack.xcom("ct_arrivals", run_id, "extract")
    assert [b["file"] for b in snapshot["batches"]] == [batch.name]
    trigger = {"kind": "data_arrival", "reason": f"new data: {batch.name}"}
    assert stack.xcom("ct_arrivals", run_id, "extract", "trigger") == trigger
    trigger_line, gate_line = _note(stack, "ct_arrivals", run_id).splitlines()
    assert trigger_line == f"Trigger: data_arrival. new data: {batch.name}"
    assert gate_line.startswith("Gate: "), gate_line  # added by the scheduler when the run ended
    assert not batch.exists()  # consumed: archived, not left in the landing zone
    assert list(pipeline_paths(config).archive.rglob(batch.name))
    from mlflow import MlflowClient

    # The whole CT DAG ran through the LocalExecutor, into MLflow on PostgreSQL.
    champion = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(
        "arrivals", "champion"
    )
    assert champion.tags["ct.run_id"] == run_id
    assert champion.tags["ct.trigger"] == "data_arrival"


def test_simultaneous_triggers_on_the_same_data_train_once(stack: AirflowStack) -> None:
    """A batch lands (the watcher's Asset event) while two manual runs are triggered: the runs
    queue one behind the other, one consumes the batch, the rest find nothing and skip."""
    from mlflow import MlflowClient

    config = find_pipeline_config("arrivals")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    versions_before = len(client.search_model_versions("name = 'arrivals'"))
    earlier = len(stack.runs("ct_arrivals"))
    batch = datagen.write_batch(config, rows=2000)
    for reason in ("manual one", "manual two"):
        stack.cli("dags", "trigger", "ct_arrivals", "--conf", json.dumps({"reason": reason}))
    stack.wait_for_runs("ct_arrivals", earlier + 3)
    time.sleep(8)  # nothing else is coming
    runs = stack.runs("ct_arrivals")[earlier:]
    assert sorted(kind for _, _, kind in runs) == ["asset_triggered", "manual", "manual"], runs
    assert {state for _, state, _ in runs} == {"success"}, (runs, stack.logs())
    consumed = [run for run, _, _ in runs if stack.xcom("ct_arrivals", run, "extract")]
    assert len(consumed) == 1  # one extraction, hence one training
    snapshot = stack.xcom("ct_arrivals", consumed[0], "extract")
    assert [b["file"] for b in snapshot["batches"]] == [batch.name]
    assert len(client.search_model_versions("name = 'arrivals'")) - versions_before <= 1


def test_new_sql_rows_trigger_one_run_and_a_backfill_reads_exactly_its_intervals(
    stack: AirflowStack,
) -> None:
    config = find_pipeline_config("warehouse")
    stack.wait_for_dag("ct_warehouse")
    stack.cli("dags", "unpause", "ct_warehouse")
    # Unpausing schedules the latest daily interval; the table is empty, so it is skipped.
    (scheduled,) = stack.wait_for_runs("ct_warehouse", 1)
    assert scheduled[1:] == ("success", "scheduled"), stack.logs()
    assert stack.xcom("ct_warehouse", scheduled[0], "extract") is None
    assert _note(stack, "ct_warehouse", scheduled[0]).startswith("Trigger: schedule. scheduled run (")

    # History for days long past (late rows, behind the watermark: the incremental stream never
    # sees them, a backfill does) and 300 fresh rows written just now.
    fresh = _events(9)
    fresh["event_time"] = [
        datetime.now(UTC) - timedelta(seconds=30) + timedelta(milliseconds=i) for i in range(len(fresh))
    ]
    engine = sqlalchemy.create_engine(stack.database.url)
    try:
        events = pd.concat([*(_events(day) for day in EVENT_DAYS), fresh])
        events.to_sql("churn_events", engine, schema="warehouse", index=False, if_exists="append")
    finally:
        engine.dispose()

    # The new-rows watcher announces them once: one data-arrival run extracts the fresh rows.
    stack.wait_for_runs("ct_warehouse", 2)
    time.sleep(8)  # a second announcement would show up within a few polls
    runs = stack.runs("ct_warehouse")
    assert [(state, kind) for _, state, kind in runs[1:]] == [("success", "asset_triggered")], (
        runs,
        stack.logs(),
    )
    arrival = runs[1][0]
    snapshot = stack.xcom("ct_warehouse", arrival, "extract")
    assert sum(batch["rows"] for batch in snapshot["batches"]) == 300
    note = _note(stack, "ct_warehouse", arrival)
    assert note.startswith("Trigger: data_arrival. new data: 300 new rows in "), note

    # A backfill of two days: one run per day, each extracting exactly that day's 300 rows.
    stack.cli(
        "backfill", "create", "--dag-id", "ct_warehouse",
        "--from-date", "2026-01-02", "--to-date", "2026-01-03", "--max-active-runs", "1",
    )  # fmt: skip
    stack.wait_for_runs("ct_warehouse", 4)
    rows = stack.query(
        "SELECT run_id, state, data_interval_start, data_interval_end FROM dag_run "
        "WHERE dag_id = %s AND run_type = 'backfill' ORDER BY logical_date",
        "ct_warehouse",
    )
    assert len(rows) == 2 and {row[1] for row in rows} == {"success"}, (rows, stack.logs())
    for run_id, _, interval_start, interval_end in rows:
        start, end = interval_start.astimezone(UTC), interval_end.astimezone(UTC)
        assert end - start == timedelta(days=1)
        assert datetime(2026, 1, 2, tzinfo=UTC) <= start <= datetime(2026, 1, 4, tzinfo=UTC)
        batches = stack.xcom("ct_warehouse", run_id, "extract")["batches"]
        assert [(b["file"], b["rows"]) for b in batches] == [
            (f"sql_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.parquet", 300)
        ]
        assert (
            _note(stack, "ct_warehouse", run_id).splitlines()[0]
            == f"Trigger: backfill. backfill of {start:%Y-%m-%d} 00:00 UTC"
        )
    # Backfills re-read history without moving the incremental stream's watermark.
    ((run_after,),) = stack.query(
        "SELECT run_after FROM dag_run WHERE dag_id = %s AND run_id = %s", "ct_warehouse", arrival
    )
    assert sql_watermark(config) == run_after.astimezone(UTC)


def test_the_api_refuses_anonymous_callers(stack: AirflowStack) -> None:
    """No anonymous admin: the REST API wants a token; only the health check is public."""
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{stack.env['AIRFLOW__API__PORT']}"
    for path in ("/api/v2/dags", "/api/v2/connections", "/api/v2/variables"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=30)
        assert refused.value.code in (401, 403), path
    with urllib.request.urlopen(base + "/api/v2/monitor/health", timeout=30) as health:
        assert health.status == 200
