"""CeleryExecutor on this machine's real services: Redis as broker, two named workers, Airflow's
metadata DB and MLflow's backend on PostgreSQL, and airflow_settings.yaml applied by the loader.
The same DAG, unchanged, runs to success with its tasks spread over both workers (the
LocalExecutor run on the same kind of stack is tests/integration/test_data_arrival.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include.ct.config import find_pipeline_config
from testbed.airflow_stack import AirflowStack, airflow_stack
from testbed.services import REPO_ROOT, MlflowServer, copy_config, throwaway_database
from tools import datagen

pytestmark = pytest.mark.integration

SETTINGS = """
airflow:
  connections:
    - conn_id: ct_warehouse
      conn_type: postgres
      conn_host: 127.0.0.1
      conn_login: ct_reader
      conn_password: ${CT_TEST_WAREHOUSE_PASSWORD}
  pools:
    - {pool_name: ct_training, pool_slot: 3, pool_description: training}
  variables:
    - {variable_name: ct_owner, variable_value: mlops}
"""


def _fleet_env(tmp_path: Path, mlflow: MlflowServer) -> dict[str, str]:
    """A `fleet` pipeline (triggered by hand only)."""
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path / "pipelines",
        "fleet.yaml",
        **{
            "name: churn": "name: fleet",
            "landing/churn": "landing/fleet",
            'schedule: "@daily"': "schedule: null",
            "  path: landing/fleet\n": "  path: landing/fleet\n  watch: false\n",
        },
    )
    return {
        "CT_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "CT_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": mlflow.url,
    }


def _train_once(stack: AirflowStack, monkeypatch: pytest.MonkeyPatch) -> str:
    for key in ("CT_PIPELINES_DIR", "CT_DATA_DIR"):
        monkeypatch.setenv(key, stack.env[key])
    datagen.write_batch(find_pipeline_config("fleet"), rows=2000)
    stack.wait_for_dag("ct_fleet")
    stack.cli("dags", "unpause", "ct_fleet")
    stack.cli("dags", "trigger", "ct_fleet", "--conf", json.dumps({"reason": "executor test"}))
    runs = stack.wait_for_runs("ct_fleet", 1)
    assert [(state, kind) for _, state, kind in runs] == [("success", "manual")], (runs, stack.logs())
    return runs[0][0]


def test_celery_executor_spreads_one_run_over_two_workers(
    postgres_mlflow: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings applied twice (idempotent), then one run whose tasks land on both workers."""
    settings = tmp_path / "airflow_settings.yaml"
    settings.write_text(SETTINGS)
    env = {**_fleet_env(tmp_path, postgres_mlflow), "CT_TEST_WAREHOUSE_PASSWORD": "not-in-the-repo"}
    with (
        throwaway_database() as database,
        airflow_stack(database, tmp_path / "airflow", env, celery_workers=2) as stack,
    ):
        _apply_settings_twice(stack, settings)
        run_id = _train_once(stack, monkeypatch)
        hosts = stack.task_hosts("ct_fleet", run_id)
    assert set(hosts) == {"extract", "validate", "train", "evaluate", "register", "deploy"}
    assert set(hosts.values()) == {"worker-1", "worker-2"}, hosts
    from mlflow import MlflowClient

    champion = MlflowClient(tracking_uri=postgres_mlflow.url).get_model_version_by_alias("fleet", "champion")
    assert champion.tags["ct.run_id"] == run_id
    assert champion.tags["ct.reason"] == "executor test"


def _apply_settings_twice(stack: AirflowStack, settings: Path) -> None:
    for _ in range(2):  # idempotent: the second apply changes nothing
        done = subprocess.run(
            [sys.executable, "-m", "tools.airflow_settings", "apply", str(settings)],
            env=stack.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "applied (1 connections, 1 pools, 1 variables)" in done.stdout
    assert stack.query("SELECT pool, slots FROM slot_pool WHERE pool = 'ct_training'") == [("ct_training", 3)]
    assert stack.query("SELECT conn_type, host, login FROM connection WHERE conn_id = 'ct_warehouse'") == [
        ("postgres", "127.0.0.1", "ct_reader")
    ]
    assert stack.query("SELECT key FROM variable") == [("ct_owner",)]
    assert stack.cli("variables", "get", "ct_owner").strip() == "mlops"  # stored encrypted
    assert "not-in-the-repo" in stack.cli("connections", "get", "ct_warehouse", "-o", "json")
