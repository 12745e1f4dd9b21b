"""Deployment through Airflow onto a running prediction service process, with real MLflow and HTTP.

One story on one registry: a first champion is served, a second replaces it, swaps under load lose
no request, a candidate that cannot serve never becomes champion, one that is too slow is rolled
back automatically, and the manual rollback DAG restores an earlier version.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from include.ct.monitoring.prediction_log import read_prediction_log
from include.ct.registry import registry
from include.ct.registry.served_model import sample_records
from testbed.services import (
    REPO_ROOT,
    MlflowServer,
    PredictionService,
    copy_config,
    start_prediction_service,
    stop,
    wait_for_http,
)
from tests.helpers.airflow_runs import run_dag
from tools import datagen

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

PIPELINE = "shop"


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictionService]:
    """The shop pipeline (a churn copy with a lenient slice gate), served by a real process."""
    configs = tmp_path_factory.mktemp("pipelines")
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        configs,
        **{
            "name: churn": f"name: {PIPELINE}",
            "landing/churn": f"landing/{PIPELINE}",
            "max_slice_drop: 0.05": "max_slice_drop: 1.0",
        },
    )
    (configs / "churn.yaml").rename(configs / f"{PIPELINE}.yaml")
    saved = {k: os.environ.get(k) for k in ("CT_PIPELINES_DIR", "CT_SERVING_URL", "CT_SERVING_RELOAD_TOKEN")}
    os.environ["CT_PIPELINES_DIR"] = str(configs)
    running = start_prediction_service(
        tmp_path_factory.mktemp("serving"),
        {
            "CT_SERVING_PIPELINES": PIPELINE,
            "CT_SERVING_POLL_SECONDS": "2",
            "CT_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
            "MLFLOW_TRACKING_URI": mlflow_server.url,
        },
    )
    os.environ["CT_SERVING_URL"] = running.url
    os.environ["CT_SERVING_RELOAD_TOKEN"] = running.token
    try:
        yield running
    finally:
        stop(running.process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(PIPELINE, "champion").version)


def serving_version(service: PredictionService) -> str:
    return str(httpx.get(f"{service.url}/v1/models/{PIPELINE}", timeout=10).json().get("version"))


def train_and_deploy(conf: dict[str, Any] | None = None) -> Any:
    datagen.write_batch(find_pipeline_config(PIPELINE), rows=3000)
    return run_dag(f"ct_{PIPELINE}", {"min_improvement": -1.0, **(conf or {})})


def test_promoted_model_is_served_and_smoke_tested(service: PredictionService, client: MlflowClient) -> None:
    # no champion yet: once the registry has answered, the service works (ready) and reports the
    # model, which is not ready on its own
    wait_for_http(f"{service.url}/ready", 60, service.process)
    before = httpx.get(f"{service.url}/ready", timeout=10)
    assert before.status_code == 200 and before.json()["no_champion"] == [PIPELINE], before.text
    assert httpx.get(f"{service.url}/v1/models/{PIPELINE}/ready", timeout=10).status_code == 503
    result = train_and_deploy({"reason": "first deployment"})
    assert result.state == "success", result.tasks
    deployed = result.xcom["deploy"]
    assert deployed["version"] == champion(client) == serving_version(service) == "1"
    checks = deployed["checks"]
    assert checks["smoke_rows"] == 50
    assert checks["p95_ms"] < 100
    assert httpx.get(f"{service.url}/ready", timeout=10).json()["no_champion"] == []
    assert httpx.get(f"{service.url}/v1/models/{PIPELINE}/ready", timeout=10).status_code == 200
    assert client.get_model_version(PIPELINE, "1").tags["ct.deploy_checks"]


def test_next_champion_replaces_the_first(service: PredictionService, client: MlflowClient) -> None:
    result = train_and_deploy()
    assert result.state == "success", result.tasks
    # With a champion serving, the infra check is the live service loading v2 beside it, and the
    # deploy swaps in that loaded copy.
    assert result.xcom["register"]["infra_check"]["where"] == service.url
    assert (result.xcom["deploy"]["version"], result.xcom["deploy"]["previous_champion"]) == ("2", "1")
    assert serving_version(service) == champion(client) == "2"
    assert "challenger" not in client.get_registered_model(PIPELINE).aliases  # unstaged once deployed


def test_swaps_under_load_lose_no_request(service: PredictionService, client: MlflowClient) -> None:
    config = find_pipeline_config(PIPELINE)
    records = sample_records(config, 10)
    outcomes: list[tuple[int, str, float]] = []
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=service.url, timeout=10) as http:
            index = 0
            while not stop_load.is_set():
                started = time.perf_counter()
                try:
                    response = http.post(
                        f"/v1/models/{PIPELINE}/predict", json={"records": [records[index % 10]]}
                    )
                    outcome = (response.status_code, str(response.json().get("version")))
                except httpx.HTTPError as exc:
                    outcome = (0, type(exc).__name__)
                outcomes.append((*outcome, time.perf_counter() - started))
                index += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    headers = {"Authorization": f"Bearer {service.token}"}
    try:
        for swap in range(10):
            target = "1" if swap % 2 == 0 else "2"
            registry.set_champion_alias(config, target)
            answer = httpx.post(f"{service.url}/v1/models/{PIPELINE}/reload", headers=headers, timeout=120)
            assert answer.status_code == 200 and answer.json()["version"] == target
            time.sleep(0.3)
    finally:
        stop_load.set()
        for worker in workers:
            worker.join(timeout=30)
    failures = [o for o in outcomes if o[0] != 200]
    assert len(outcomes) > 200 and failures == []
    assert {version for _, version, _ in outcomes} == {"1", "2"}
    assert max(seconds for *_, seconds in outcomes) < 2.0
    assert serving_version(service) == "2"  # ten swaps end where they started


def test_candidate_that_cannot_serve_never_becomes_champion(
    service: PredictionService, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.models

    real_infer = mlflow.models.infer_signature

    def signature_without_plan(features: Any, *args: Any, **kwargs: Any) -> Any:
        return real_infer(features.drop(columns=["plan"]), *args, **kwargs)

    monkeypatch.setattr(mlflow.models, "infer_signature", signature_without_plan)
    result = train_and_deploy()
    assert result.tasks["register"] == "failed"
    assert result.tasks["deploy"] == "upstream_failed"
    rejected = client.get_model_version(PIPELINE, "3")
    assert rejected.tags["ct.decision"] == "rejected_infra"
    assert "plan" in rejected.tags["ct.decision_reason"]
    assert champion(client) == serving_version(service) == "2"


def test_too_slow_candidate_is_rolled_back_automatically(
    service: PredictionService, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.pipeline import Pipeline

    from include.ct.modeling import train
    from tests.helpers.broken_models import SlowTransformer

    real_build = train.build_pipeline

    def slow_pipeline(config: Any) -> Any:
        return Pipeline([("pause", SlowTransformer(0.3)), ("model", real_build(config))])

    monkeypatch.setattr(train, "build_pipeline", slow_pipeline)
    result = train_and_deploy()
    assert result.tasks["register"] == "success"
    assert result.tasks["deploy"] == "failed"
    slow = client.get_model_version(PIPELINE, "4")
    assert slow.tags["ct.decision"] == "rolled_back"
    assert "latency" in slow.tags["ct.decision_reason"]
    assert slow.tags["ct.rolled_back_to"] == "2"
    assert champion(client) == serving_version(service) == "2"


def test_manual_rollback_dag_restores_an_earlier_version(
    service: PredictionService, client: MlflowClient
) -> None:
    result = run_dag(f"ct_{PIPELINE}_rollback", {"version": "1", "reason": "drill"})
    assert result.state == "success", result.tasks
    assert result.xcom["rollback"] == {"from": "2", "to": "1", "moved": True, "serving": "1"}
    assert champion(client) == serving_version(service) == "1"
    assert client.get_model_version(PIPELINE, "2").tags["ct.decision_reason"] == "manual rollback: drill"


def test_bad_requests_to_the_live_service_get_4xx_and_it_stays_up(service: PredictionService) -> None:
    url = f"{service.url}/v1/models/{PIPELINE}"
    assert httpx.post(f"{url}/predict", content=b"{oops", timeout=10).status_code == 400
    assert httpx.post(f"{url}/predict", json={"records": [{"plan": 3}]}, timeout=10).status_code == 422
    assert (
        httpx.post(f"{service.url}/v1/models/nope/predict", json={"records": [{}]}, timeout=10).status_code
        == 404
    )
    assert httpx.post(f"{url}/reload", timeout=10).status_code == 401
    assert httpx.get(f"{service.url}/health", timeout=10).status_code == 200


def test_predictions_reach_the_prediction_log(service: PredictionService, data_dir: Path) -> None:
    stop(service.process)  # shutting down flushes the buffered log
    logged = read_prediction_log(PIPELINE, data_dir / "predictions")
    assert len(logged) > 200
    assert {"1", "2"} <= set(logged["model_version"])
