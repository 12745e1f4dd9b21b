"""A regression config written by the test gets its own DAG that trains and crowns a champion."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from testbed.services import MlflowServer
from tests.helpers.airflow_runs import run_dag
from tools import datagen

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

SPEND_CONFIG = """\
name: spend
description: Monthly spend per customer (regression example written by the test).
task: regression
target: spend
features:
  visits: {type: integer, min: 0, max: 400}
  basket_size: {type: float, min: 0, max: 500}
  segment: {type: category, values: [retail, pro, enterprise]}
  newsletter: {type: boolean}
metric: rmse
metrics: [mae, r2]
promotion: {threshold: 50.0, min_improvement: 0.0, max_slice_drop: 5.0}
slices: [segment]
model: {type: ridge, params: {alpha: 1.0}}
schedule: "0 6 * * *"
owner: analytics
tags: [spend]
"""


@pytest.fixture(scope="module")
def pipelines_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("pipelines")
    (folder / "spend.yaml").write_text(SPEND_CONFIG)
    os.environ["CT_PIPELINES_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("CT_PIPELINES_DIR", None)


def test_regression_config_runs_and_registers_champion(
    mlflow_server: MlflowServer, data_dir: Path, pipelines_dir: Path
) -> None:
    config = find_pipeline_config("spend")
    datagen.write_batch(config, rows=2000, fmt="parquet")
    result = run_dag("ct_spend", {"reason": "regression example"})
    assert result.state == "success", result.tasks
    client = MlflowClient(tracking_uri=mlflow_server.url)
    champion = client.get_model_version_by_alias("spend", "champion")
    assert champion.tags["ct.dag_id"] == "ct_spend"
    assert champion.tags["ct.run_id"] == result.run_id
    run = client.get_run(champion.run_id)
    assert run.data.tags["ct.data_version"] == result.xcom["extract"]["data_version"]
    assert run.data.params["task"] == "regression"
    assert run.data.metrics["test_rmse"] < 50.0
    assert "plots/predicted_vs_actual.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")
    }
    # Both DAGs live side by side from the same factory.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    assert {"ct_churn", "ct_spend"} <= set(bag.dags)
    # Its own cron, combined with the data-arrival Asset (asset-or-time schedule).
    assert bag.dags["ct_spend"].timetable.timetable.expression == "0 6 * * *"
