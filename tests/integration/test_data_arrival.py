"""Data arrival through a real scheduler and triggerer: one dropped batch, exactly one run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from include.ct import datagen
from include.ct.config import find_pipeline_config
from include.ct.storage import pipeline_paths
from tests.helpers.airflow_stack import airflow_stack
from tests.helpers.fixtures import REPO_ROOT, PostgresDatabase, copy_config

pytestmark = pytest.mark.integration


def test_a_dropped_batch_leads_to_exactly_one_run_that_consumes_it(
    postgres_database: PostgresDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelines = tmp_path / "pipelines"
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        pipelines,
        **{
            "name: churn": "name: arrivals",
            "landing/churn": "landing/arrivals",
            'schedule: "@daily"': "schedule: null",  # only data arrival starts runs here
            "  path: landing/arrivals\n": "  path: landing/arrivals\n  poll_seconds: 2\n"
            "  settle_seconds: 1\n",
        },
    )
    data = tmp_path / "data"
    env = {
        "CT_PIPELINES_DIR": str(pipelines),
        "CT_DATA_DIR": str(data),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = find_pipeline_config("arrivals")
    assert config.source.poll_seconds == 2
    with airflow_stack(postgres_database, tmp_path / "airflow", env) as stack:
        stack.wait_for_dag("ct_arrivals")
        stack.cli("dags", "unpause", "ct_arrivals")
        time.sleep(5)  # the watcher is running and has seen the empty landing zone
        assert stack.runs("ct_arrivals") == []
        batch = datagen.write_batch(config, rows=2000)

        runs = stack.wait_for_runs("ct_arrivals", 1)
        time.sleep(8)  # a second announcement would show up within a few polls
        runs = stack.runs("ct_arrivals")
        assert [(state, run_type) for _, state, run_type in runs] == [("success", "asset_triggered")], (
            runs,
            stack.logs(),
        )
        run_id = runs[0][0]
        snapshot = stack.xcom("ct_arrivals", run_id, "extract")
        assert [b["file"] for b in snapshot["batches"]] == [batch.name]
        assert stack.xcom("ct_arrivals", run_id, "extract", "trigger") == {
            "kind": "data_arrival",
            "reason": f"new data: {batch.name}",
        }
        assert not batch.exists()  # consumed: archived, not left in the landing zone
        assert list(pipeline_paths(config).archive.rglob(batch.name))
