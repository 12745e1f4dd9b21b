"""`runtime: docker` is wired in the DAG itself: request -> DockerOperator -> result, after validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.services import REPO_ROOT, copy_config


def test_a_docker_runtime_pipeline_runs_its_heavy_steps_as_docker_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.docker.operators.docker import DockerOperator

    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path / "pipelines",
        "boxed.yaml",
        **{"name: churn": "name: boxed", "schedule:": "runtime: {type: docker}\nschedule:"},
    )
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["ct_boxed"]
    for step, before in (("train", "validate"), ("evaluate", "train")):
        request, container, result = (dag.get_task(f"{step}{s}") for s in ("_request", "_container", ""))
        assert isinstance(container, DockerOperator)
        assert container.entrypoint == ["python", "-m", "include.ct.steps"]
        assert container.command[:3] == [step, "--pipeline", "boxed"]
        assert before in request.upstream_task_ids  # never on unvalidated data
        assert request.task_id in container.upstream_task_ids
        assert container.task_id in result.upstream_task_ids
        assert (request.phase, result.phase) == ("request", "collect")
    # The process runtime keeps one task per step.
    assert "train_container" not in bag.dags["ct_churn"].task_ids
