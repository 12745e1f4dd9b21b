"""Shadow, then promotion on live labels, through a real scheduler and triggerer.

A real Airflow deployment (LocalExecutor, metadata on PostgreSQL), MLflow server and prediction
service process. The first version is deployed directly; the second is staged in shadow while
clients send traffic with ids and their labels arrive; the deploy task waits deferred in the
triggerer (holding no worker slot) until the live evidence promotes it; the run note says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from include.ct.monitoring.prediction_log import read_prediction_log
from include.ct.registry import staging
from testbed.airflow_stack import AirflowStack, airflow_stack
from testbed.services import (
    REPO_ROOT,
    MlflowServer,
    PredictionService,
    copy_config,
    start_prediction_service,
    stop,
    throwaway_database,
)
from tests.helpers.live_traffic import LiveTraffic
from tools import datagen

pytestmark = pytest.mark.e2e

PIPELINE = "shadowed"
DAG_ID = f"ct_{PIPELINE}"
ONLINE = """  strategy: shadow
  online:
    min_labels: 300
    tolerance: 0.05
    poll_seconds: 2
    guardrail_poll_seconds: 1
    max_wait_hours: 0.1
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_mlflow: MlflowServer
) -> Iterator[tuple[AirflowStack, PredictionService]]:
    tmp_path = tmp_path_factory.mktemp("online")
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path / "pipelines",
        f"{PIPELINE}.yaml",
        **{
            "name: churn": f"name: {PIPELINE}",
            "landing/churn": f"landing/{PIPELINE}",
            'schedule: "@daily"': "schedule: null",
            f"  path: landing/{PIPELINE}\n": f"  path: landing/{PIPELINE}\n  watch: false\n",
            "max_slice_drop: 0.05": "max_slice_drop: 1.0",
            "  strategy: direct": ONLINE.rstrip("\n") + "\n  # was",
        },
    )
    env = {
        "CT_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "CT_DATA_DIR": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": postgres_mlflow.url,
    }
    with throwaway_database() as database, pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        service = start_prediction_service(
            tmp_path / "serving",
            {
                **env,
                "CT_SERVING_PIPELINES": PIPELINE,
                "CT_SERVING_POLL_SECONDS": "2",
                "CT_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
            },
        )
        # No ct_serving connection in this deployment: the hook falls back to these variables.
        env |= {"CT_SERVING_URL": service.url, "CT_SERVING_RELOAD_TOKEN": service.token}
        try:
            with airflow_stack(database, tmp_path / "airflow", env) as running:
                running.wait_for_dag(DAG_ID)
                running.cli("dags", "unpause", DAG_ID)
                yield running, service
        finally:
            stop(service.process)


def trigger(stack: AirflowStack, reason: str) -> None:
    datagen.write_batch(find_pipeline_config(PIPELINE), rows=3000)
    conf = {"reason": reason, "min_improvement": -1.0}
    stack.cli("dags", "trigger", DAG_ID, "--conf", json.dumps(conf))


def note(stack: AirflowStack, run_id: str) -> str:
    rows = stack.query(
        "SELECT n.content FROM dag_run_note n JOIN dag_run r ON r.id = n.dag_run_id "
        "WHERE r.dag_id = %s AND r.run_id = %s",
        DAG_ID,
        run_id,
    )
    return str(rows[0][0]) if rows else ""


def test_shadow_then_promote_on_live_labels_through_the_triggerer(
    stack: tuple[AirflowStack, PredictionService], postgres_mlflow: MlflowServer
) -> None:
    airflow, service = stack
    client = MlflowClient(postgres_mlflow.url)
    trigger(airflow, "first version")
    (first,) = airflow.wait_for_runs(DAG_ID, 1)
    assert first[1] == "success", airflow.logs()
    assert airflow.xcom(DAG_ID, first[0], "deploy")["deployed_directly"] is True

    with LiveTraffic(service.url, PIPELINE) as traffic:
        trigger(airflow, "second version, in shadow")
        deferred_seen = False
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(airflow.runs(DAG_ID)) < 2:
            time.sleep(1)
        run_id = airflow.runs(DAG_ID)[1][0]
        while time.monotonic() < deadline:
            instance = airflow.task_instance(DAG_ID, run_id, "deploy")
            deferred = instance is not None and instance[1] == "deferred"
            status = httpx.get(f"{service.url}/v1/models/{PIPELINE}", timeout=10).json()
            if airflow.runs(DAG_ID)[1][1] in ("success", "failed"):
                break
            if deferred and airflow.task_instance(DAG_ID, run_id, "deploy")[1] == "deferred":  # type: ignore[index]
                deferred_seen = True  # still waiting after the status was read: v2 was in shadow
                assert (status["version"], status["mode"], status["challenger"]) == ("1", "shadow", "2")
            time.sleep(1)
    runs = airflow.runs(DAG_ID)
    assert runs[1][1] == "success", (runs, airflow.logs())
    assert deferred_seen  # the wait ran in the triggerer, not in a worker slot
    deployed = airflow.xcom(DAG_ID, run_id, "deploy")
    assert deployed["action"] == "promote", deployed
    assert client.get_model_version_by_alias(PIPELINE, "champion").version == "2"
    tags = client.get_model_version(PIPELINE, "2").tags
    assert tags[staging.STATUS] == "promoted"
    assert "staged (shadow, share 1)" in tags[staging.STEPS]
    lines = note(airflow, run_id).splitlines()
    assert lines[0] == "Trigger: manual. second version, in shadow"
    assert lines[1].startswith("Gate: promote")
    online_line = "Online: promoted after shadow at 100%. live roc_auc: challenger no worse"
    assert lines[2].startswith(online_line), lines
    assert {status for status, _ in traffic.outcomes} == {200}
    for answered in traffic.answers.values():  # v1 answered until the promotion, v2 only after it
        switch = answered.index("2") if "2" in answered else len(answered)
        assert answered[0] == "1" and set(answered[:switch]) == {"1"} and set(answered[switch:]) <= {"2"}
    logged = read_prediction_log(PIPELINE, Path(airflow.env["CT_DATA_DIR"]) / "predictions", shadow=True)
    assert set(logged.loc[logged["role"] == "shadow", "model_version"]) == {"2"}
