"""Where a heavy step runs: in this worker, or in a container of the project image (DockerOperator).

With ``runtime: {type: docker}`` the step runs ``python -m include.ct.steps`` in a container of
``runtime.image`` (the project's image by default, the one every compose service runs): the
request and result are JSON files in artifact storage (mounted at the same path inside), the
container's log streams into the task log, and a non-zero exit fails the task with that log.
Everything else is the same code as in-process (``include.ct.steps.run_step``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.sdk import BaseOperator, Context
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


def run_heavy_step(
    operator: BaseOperator, context: Context, config: Any, step: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Run ``step`` in-process or in a container, per ``config.runtime``; returns its XCom."""
    from include.ct.steps import run_step

    if config.runtime.type == "process":
        return run_step(step, config, request)
    return _run_in_container(operator, context, config, step, request)


def container_operator(
    task_id: str, config: Any, step: str, request_path: str, result_path: str
) -> BaseOperator:
    """The DockerOperator that runs one step of ``config`` in its runtime image."""
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
    )


def _run_in_container(
    operator: BaseOperator, context: Context, config: Any, step: str, request: dict[str, Any]
) -> dict[str, Any]:
    from include.ct.steps import exchange_paths
    from include.ct.storage import write_json_atomic

    request_path, result_path = exchange_paths(config, context["run_id"], step)
    result_path.unlink(missing_ok=True)  # a retry never reads an earlier try's result
    write_json_atomic(request_path, request)
    container = container_operator(
        f"{operator.task_id}_container", config, step, str(request_path), str(result_path)
    )
    operator.log.info("Running %s of %s in a container of %s", step, config.name, config.runtime.image)
    container.execute(context)  # raises with the container's log on a non-zero exit
    if not result_path.exists():
        raise AirflowFailException(f"the {step} container exited 0 but wrote no result at {result_path}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result
