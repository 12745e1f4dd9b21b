"""Where a heavy step runs: in this worker, or in a container of the project image (DockerOperator).

With ``runtime: {type: docker}`` the DAG factory emits the ``DockerOperator`` of
``container_operator`` as a task of its own, between the step operator's request and collect
phases: it runs ``python -m include.ct.steps`` in a container of ``runtime.image`` (the project's
image by default, the one every compose service runs); the request and result are JSON files in
artifact storage (mounted at the same path inside), the container's log is the task's log, and a
non-zero exit fails that task. The step is the same code as in-process (``include.ct.steps``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

# Passed through to the container when set in the worker; secrets travel as private environment
# (never rendered in the UI or logged).
PASSED_ENV = (
    "MLFLOW_TRACKING_URI",
    "CT_MLFLOW_UI_URL",
    "CT_CODE_VERSION",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)
# The image's own entry point runs Airflow; the step CLI is the same in every image of the project.
STEP_ENTRYPOINT = ("python", "-m", "include.ct.steps")
PRIVATE_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def run_step_in_process(config: Any, step: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run ``step`` of ``config`` in this worker; returns its XCom."""
    from include.ct.steps import run_step

    return run_step(step, config, request)


def write_step_request(config: Any, run_id: str, step: str, request: dict[str, Any]) -> dict[str, str]:
    """Write the step's request where its container reads it; returns both exchange paths."""
    from include.ct.steps import exchange_paths
    from include.ct.storage import write_json_atomic

    request_path, result_path = exchange_paths(config, run_id, step)
    result_path.unlink(missing_ok=True)  # a retry never reads an earlier try's result
    write_json_atomic(request_path, request)
    return {"request": str(request_path), "result": str(result_path)}


def read_step_result(exchange: Mapping[str, str], step: str) -> dict[str, Any]:
    """The result the step's container wrote at ``exchange["result"]``."""
    path = Path(exchange["result"])
    if not path.exists():
        raise AirflowFailException(f"the {step} container exited 0 but wrote no result at {path}")
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def container_operator(
    task_id: str, config: Any, step: str, request_path: str, result_path: str, **kwargs: Any
) -> BaseOperator:
    """The DockerOperator that runs one step of ``config`` in its runtime image.

    ``request_path`` and ``result_path`` may be templates (the request task's XCom); ``kwargs``
    go to the operator (retries, docs).
    """
    from airflow.providers.docker.operators.docker import DockerOperator
    from docker.types import Mount

    from include.ct.storage import data_dir

    runtime = config.runtime
    root = str(data_dir())
    mounts = [
        Mount(target=root, source=runtime.data_volume, type="volume")
        if runtime.data_volume
        else Mount(target=root, source=root, type="bind")
    ]
    environment = {"CT_DATA_DIR": root, **{k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}}
    extra_pipelines = os.environ.get("CT_PIPELINES_DIR")
    if extra_pipelines:
        mounts.append(Mount(target=extra_pipelines, source=extra_pipelines, type="bind", read_only=True))
        environment["CT_PIPELINES_DIR"] = extra_pipelines
    environment.update(runtime.environment)
    return DockerOperator(
        task_id=task_id,
        image=runtime.image,
        entrypoint=list(STEP_ENTRYPOINT),
        command=[step, "--pipeline", config.name, "--request", request_path, "--result", result_path],
        docker_url=runtime.docker_url,
        network_mode=runtime.network_mode,
        mounts=mounts,
        environment=environment,
        private_environment={k: os.environ[k] for k in PRIVATE_ENV if os.environ.get(k)},
        user=runtime.user or f"{os.getuid()}:{os.getgid()}",
        mem_limit=runtime.mem_limit,
        auto_remove="success",
        mount_tmp_dir=False,
        force_pull=False,
        tty=False,
        **kwargs,
    )
