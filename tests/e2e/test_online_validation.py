"""Online validation through ``dag.test`` (the trigger runs inline), on a live prediction service and
real MLflow. Shadow then promote on live labels, and a canary over its latency budget rolled back
under load, run through a real scheduler and triggerer in ``test_online_validation_stack.py``;
this module covers what needs the test process's hand on the model or the service.

One story on one registry: the first version is deployed directly (nothing to compare with); a
slow second one is staged as a canary under load and rolled back by its latency guardrail with no
failed request; a third that fails single-row requests is rolled back by its error-rate guardrail,
the champion answering every request it failed; a service restarted mid-canary resumes the same
staged state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from include.ct.registry import staging
from testbed.services import (
    REPO_ROOT,
    MlflowServer,
    PredictionService,
    copy_config,
    start_prediction_service,
    stop,
)
from tests.helpers.airflow_runs import run_dag
from tests.helpers.live_traffic import LiveTraffic
from tools import datagen

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

PIPELINE = "shop_online"
ONLINE = """  strategy: {strategy}
  canary_steps: [0.2, 0.5]
  online:
    min_labels: 300
    tolerance: 0.05
    poll_seconds: 2
    guardrail_poll_seconds: 1
    guardrail_min_requests: 20
    step_min_requests: 1000000
    latency_p99_ms: 150
    max_wait_hours: 0.1
"""


def write_config(folder: Path, strategy: str) -> None:
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        folder,
        filename=f"{PIPELINE}.yaml",
        **{
            "name: churn": f"name: {PIPELINE}",
            "landing/churn": f"landing/{PIPELINE}",
            "max_slice_drop: 0.05": "max_slice_drop: 1.0",
            "  strategy: direct": ONLINE.format(strategy=strategy).rstrip("\n") + "\n  # was",
        },
    )


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("pipelines")
    write_config(folder, "shadow")
    saved = os.environ.get("CT_PIPELINES_DIR")
    os.environ["CT_PIPELINES_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("CT_PIPELINES_DIR", None)
    else:
        os.environ["CT_PIPELINES_DIR"] = saved


def start_service(mlflow_server: MlflowServer, root: Path) -> PredictionService:
    return start_prediction_service(
        root,
        {
            "CT_SERVING_PIPELINES": PIPELINE,
            "CT_SERVING_POLL_SECONDS": "2",
            "CT_PREDICTION_LOG_FLUSH_SECONDS": "0.5",
            "MLFLOW_TRACKING_URI": mlflow_server.url,
        },
    )


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, data_dir: Path, configs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PredictionService]]:
    """The running service, in a dict so a test can replace it with a restarted one."""
    saved = {k: os.environ.get(k) for k in ("CT_SERVING_URL", "CT_SERVING_RELOAD_TOKEN")}
    holder = {"service": start_service(mlflow_server, tmp_path_factory.mktemp("serving"))}
    os.environ["CT_SERVING_URL"] = holder["service"].url
    os.environ["CT_SERVING_RELOAD_TOKEN"] = holder["service"].token
    try:
        yield holder
    finally:
        stop(holder["service"].process)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def train_and_deploy() -> Any:
    datagen.write_batch(find_pipeline_config(PIPELINE), rows=3000)
    return run_dag(f"ct_{PIPELINE}", {"min_improvement": -1.0})


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(PIPELINE, "champion").version)


def test_the_first_version_is_deployed_directly(
    service: dict[str, PredictionService], client: MlflowClient
) -> None:
    result = train_and_deploy()
    assert result.state == "success", result.tasks
    assert result.xcom["deploy"]["deployed_directly"] is True
    assert "no champion" in result.xcom["deploy"]["reason"]
    assert champion(client) == "1"


def canary_under_load(
    step: Any, service: PredictionService, configs: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, LiveTraffic]:
    """Train a model with ``step`` before the real pipeline and deploy it as a canary while four
    clients send single-row requests."""
    from sklearn.pipeline import Pipeline

    from include.ct.modeling import train

    write_config(configs, "canary")
    real_build = train.build_pipeline
    monkeypatch.setattr(
        train, "build_pipeline", lambda config: Pipeline([("broken", step), ("model", real_build(config))])
    )
    with LiveTraffic(service.url, PIPELINE, clients=4, batch=1, label=False) as traffic:
        result = train_and_deploy()
    return result, traffic


def assert_rolled_back(
    client: MlflowClient, version: str, reason: str, traffic: LiveTraffic
) -> dict[str, str]:
    """``version`` was rejected online for ``reason``, the champion stayed, every request got an answer."""
    rejected: dict[str, str] = client.get_model_version(PIPELINE, version).tags
    assert rejected["ct.decision"] == "rejected_online"
    assert reason in rejected["ct.decision_reason"], rejected["ct.decision_reason"]
    assert champion(client) == "1"
    assert staging.staged_challenger(find_pipeline_config(PIPELINE)) is None
    assert traffic.outcomes and {status for status, _ in traffic.outcomes} == {200}
    return rejected


def test_a_slow_canary_is_rolled_back_under_load_without_a_failed_request(
    service: dict[str, PredictionService],
    client: MlflowClient,
    configs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.helpers.broken_models import SlowTransformer

    started = time.monotonic()
    result, traffic = canary_under_load(SlowTransformer(0.3), service["service"], configs, monkeypatch)
    assert result.tasks["deploy"] == "failed", result.tasks
    rejected = assert_rolled_back(client, "2", "p99 latency", traffic)
    assert {version for _, version in traffic.outcomes} == {"1", "2"}  # the canary answered some
    steps = rejected[staging.STEPS]
    assert "staged (canary, share 0.2)" in steps and "rejected_online: guardrail" in steps
    assert time.monotonic() - started < 600


def test_a_failing_canary_is_rolled_back_under_load_without_a_failed_request(
    service: dict[str, PredictionService],
    client: MlflowClient,
    configs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.helpers.broken_models import SingleRowFailure

    result, traffic = canary_under_load(SingleRowFailure(), service["service"], configs, monkeypatch)
    assert result.tasks["deploy"] == "failed", result.tasks
    # The champion answered every request the canary failed: no client saw an error.
    assert_rolled_back(client, "3", "error rate", traffic)


def test_a_restarted_service_resumes_the_staged_canary(
    service: dict[str, PredictionService],
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = find_pipeline_config(PIPELINE)
    # The service reads the staged state from the registry only, whatever staged it.
    staging.stage(config, "2", strategy="canary", share=0.2, against="1")
    try:
        stop(service["service"].process)
        service["service"] = start_service(mlflow_server, tmp_path_factory.mktemp("restarted"))
        os.environ["CT_SERVING_URL"] = service["service"].url
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and status.get("challenger_state") != "serving":
            status = httpx.get(f"{service['service'].url}/v1/models/{PIPELINE}", timeout=10).json()
            time.sleep(0.5)
        assert (status["version"], status["challenger"], status["mode"], status["share"]) == (
            "1",
            "2",
            "canary",
            0.2,
        )
        assert status["challenger_state"] == "serving"
    finally:
        staging.unstage(config)
