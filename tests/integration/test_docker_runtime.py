"""The container runtime: train and evaluate run in the locally built project image through the
DockerOperator, on a real Docker engine; the rest of the DAG is unchanged."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.ct.config import find_pipeline_config
from include.ct.steps import exchange_paths
from testbed.services import REPO_ROOT, MlflowServer, copy_config
from tests.helpers.airflow_runs import run_dag
from tests.helpers.docker_engine import build_project_image, docker_engine
from tools import datagen

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

IMAGE = "airflow-ct:test"
RUNTIME = """runtime:
  type: docker
  image: airflow-ct:test
  network_mode: host        # MLflow listens on 127.0.0.1 in this test
"""


@pytest.fixture(scope="module")
def project_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with docker_engine(tmp_path_factory.mktemp("dockerd") / "dockerd.log") as unavailable:
        if unavailable:
            pytest.skip(f"Docker runtime not tested: {unavailable}")
        build_project_image(IMAGE)
        yield IMAGE


@pytest.fixture
def boxed_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path / "pipelines",
        "boxed.yaml",
        **{
            "name: churn": "name: boxed",
            "landing/churn": "landing/boxed",
            "schedule:": RUNTIME + "schedule:",
        },
    )
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "pipelines"))
    return "boxed"


def test_train_and_evaluate_run_in_a_container_of_the_project_image(
    project_image: str, boxed_pipeline: str, mlflow_server: MlflowServer, data_dir: Path
) -> None:
    config = find_pipeline_config(boxed_pipeline)
    assert config.runtime.type == "docker" and config.runtime.image == project_image
    datagen.write_batch(config, rows=2000)

    result = run_dag("ct_boxed", {"reason": "container runtime"})

    assert result.state == "success", result.tasks
    assert result.tasks["deploy"] == "success"
    for step in ("train", "evaluate"):  # the container ran as a DockerOperator task of the DAG
        assert result.tasks[f"{step}_container"] == "success"
    # The container wrote the results the operators returned, through the shared data volume.
    for step in ("train", "evaluate"):
        request, answer = exchange_paths(config, result.run_id, step)
        assert request.exists() and answer.exists(), step
        assert json.loads(answer.read_text()) == result.xcom[step]
    assert result.xcom["evaluate"]["promote"] is True
    from mlflow import MlflowClient

    champion = MlflowClient(mlflow_server.url).get_model_version_by_alias("boxed", "champion")
    assert champion.run_id == result.xcom["train"]["run_id"]


def test_a_failing_step_surfaces_the_exit_code_and_the_containers_log(
    project_image: str, boxed_pipeline: str, mlflow_server: MlflowServer, data_dir: Path, tmp_path: Path
) -> None:
    from airflow.providers.docker.exceptions import DockerContainerFailedException

    from ct_airflow.runtime import container_operator

    config = find_pipeline_config(boxed_pipeline)
    request = data_dir / "broken.request.json"
    request.write_text(json.dumps({"run_id": "no-such-run", "test_path": "/nowhere.parquet"}))
    operator = container_operator(
        "evaluate_container", config, "evaluate", str(request), str(tmp_path / "r.json")
    )
    with pytest.raises(DockerContainerFailedException) as failure:
        operator.execute({})
    assert "StatusCode': 1" in str(failure.value)
    log = "\n".join(line.decode() if isinstance(line, bytes) else line for line in failure.value.logs or [])
    assert "/nowhere.parquet" in log  # the step's own error, from inside the container
    assert os.environ["CT_PIPELINES_DIR"]  # the pipeline folder was mounted for the container
