"""The CT DAG runs with Airflow's metadata DB on PostgreSQL (own database, dropped afterwards)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from include.ct import datagen
from include.ct.config import find_pipeline_config
from tests.helpers.fixtures import MlflowServer, PostgresDatabase

pytestmark = pytest.mark.integration
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def test_ct_churn_runs_on_postgres_metadata_db(
    mlflow_server: MlflowServer, data_dir: Path, postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    datagen.write_batch(find_pipeline_config("churn"), rows=2000)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_database.url,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "CT_DATA_DIR": str(data_dir),
    }
    for args in (["db", "migrate"], ["dags", "test", "ct_churn"]):
        result = subprocess.run(
            [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=postgres_database.name)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT run_id, state FROM dag_run WHERE dag_id = 'ct_churn'")
            runs = cursor.fetchall()
            cursor.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = 'ct_churn' ORDER BY task_id"
            )
            tasks = dict(cursor.fetchall())
    finally:
        conn.close()
    assert [state for _, state in runs] == ["success"]
    assert tasks == {
        "evaluate": "success",
        "extract": "success",
        "gate": "success",
        "register": "success",
        "deploy": "success",
        "train": "success",
        "validate": "success",
    }
    from mlflow import MlflowClient

    champion = MlflowClient(tracking_uri=mlflow_server.url).get_model_version_by_alias("churn", "champion")
    assert champion.tags["ct.run_id"] == runs[0][0]
