"""Faults survived with the right end state: the MLflow server going down in the middle of
registration and of the alias move, and the prediction service killed in the middle of a swap."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from mlflow import MlflowClient

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.extract import extract
from include.ct.data.validate import validate_snapshot
from include.ct.modeling.train import train_challenger
from include.ct.registry import registry
from include.ct.registry.deploy import deploy_version, register_candidate
from include.ct.registry.served_model import sample_records
from testbed.services import start_mlflow_server, start_prediction_service, stop, wait_for_http
from tests.reliability.conftest import Ledger
from tools import datagen

pytestmark = pytest.mark.integration


@pytest.fixture
def restartable_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A real MLflow server the test can kill and bring back on the same port and store."""
    root = tmp_path / "mlflow"
    server = start_mlflow_server(root)
    state: dict[str, Any] = {"server": server, "root": root, "port": urlparse(server.url).port}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("CT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "8")  # the client's own backoff
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    try:
        yield state
    finally:
        stop(state["server"].process)


def _outage(state: dict[str, Any], seconds: float) -> threading.Thread:
    """Kill the server now; restart it after ``seconds`` on the same port and store."""
    process = state["server"].process
    os.killpg(process.pid, signal.SIGKILL)  # the server and its uvicorn and job workers, no cleanup
    process.wait(timeout=30)

    def come_back() -> None:
        time.sleep(seconds)
        state["server"] = start_mlflow_server(state["root"], port=state["port"])

    thread = threading.Thread(target=come_back)
    thread.start()
    return thread


def _trained(config: PipelineConfig, run: str) -> tuple[registry.Lineage, Any]:
    datagen.write_batch(config, rows=1500)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage(
        pipeline=config.name, dag_id=config.dag_id, run_id=run, data_version=snapshot.data_version
    )
    return lineage, train_challenger(config, lineage)


def test_mlflow_down_during_register_and_alias_move(
    restartable_mlflow: dict[str, Any], reliability: Ledger
) -> None:
    config = find_pipeline_config("churn")
    lineage, trained = _trained(config, "manual__outage")

    # The server dies just as registration starts; the client backs off until it is back.
    outage = _outage(restartable_mlflow, 6)
    candidate = register_candidate(
        config, trained.run_id, trained.test_path, decision="promote", lineage=lineage
    )
    outage.join()
    # Airflow's retry of the same task afterwards changes nothing.
    again = register_candidate(config, trained.run_id, trained.test_path, decision="promote", lineage=lineage)
    assert again.version == candidate.version

    outage = _outage(restartable_mlflow, 6)
    moved = deploy_version(config, candidate.version, trained.test_path, reason="outage test", service=None)
    outage.join()
    retried = deploy_version(config, candidate.version, trained.test_path, reason="outage test", service=None)
    assert moved.moved and not retried.moved  # the alias moved exactly once

    client = MlflowClient(restartable_mlflow["server"].url)
    assert len(client.search_model_versions(f"name = '{config.registered_model_name}'")) == 1
    assert (
        client.get_model_version_by_alias(config.registered_model_name, "champion").version
        == candidate.version
    )
    reliability.record(
        "fault",
        "MLflow server killed during register, then during the alias move",
        "client backed off until it was back; 1 version registered, alias moved once",
        inputs=2,
    )


def test_prediction_service_killed_during_a_swap_comes_back_serving_the_champion(
    restartable_mlflow: dict[str, Any], tmp_path: Path, reliability: Ledger
) -> None:
    config = find_pipeline_config("churn")
    lineage, first = _trained(config, "manual__first")
    one = register_candidate(config, first.run_id, first.test_path, decision="promote", lineage=lineage)
    deploy_version(config, one.version, first.test_path, reason="first", service=None)
    env = {**os.environ, "CT_SERVING_POLL_SECONDS": "0"}
    service = start_prediction_service(tmp_path / "serving", env)
    try:
        wait_for_http(f"{service.url}/ready", timeout=120, process=service.process)
        headers = {"Authorization": f"Bearer {service.token}"}
        assert httpx.get(f"{service.url}/v1/models/churn", timeout=30).json()["version"] == one.version
        lineage2, second = _trained(config, "manual__second")
        two = register_candidate(
            config, second.run_id, second.test_path, decision="promote", lineage=lineage2
        )
        registry.set_champion_alias(config, two.version)
        # Kill it while it loads the new version beside the old one.
        reload = threading.Thread(
            target=lambda: httpx.post(f"{service.url}/v1/models/churn/reload", headers=headers, timeout=60)
        )
        reload.start()
        time.sleep(0.3)
        service.process.send_signal(signal.SIGKILL)
        service.process.wait(timeout=30)
        reload.join(timeout=60)
    finally:
        stop(service.process)

    restarted = start_prediction_service(tmp_path / "serving-again", env)
    try:
        wait_for_http(f"{restarted.url}/ready", timeout=120, process=restarted.process)
        answer = httpx.get(f"{restarted.url}/v1/models/churn", timeout=30).json()
        assert answer["version"] == two.version  # the current champion, not the one it was swapping from
        records = sample_records(config, 3)
        predicted = httpx.post(
            f"{restarted.url}/v1/models/churn/predict", json={"records": records}, timeout=30
        )
        assert predicted.status_code == 200 and predicted.json()["version"] == two.version
    finally:
        stop(restarted.process)
    reliability.record(
        "fault",
        "prediction service SIGKILLed during a hot swap",
        f"restarted and served the current champion v{two.version}",
    )
