"""MLflow access: experiments, lineage-tagged runs, registered versions and the ``champion`` alias.

Every write is idempotent: a retried task finds what an earlier attempt made instead of adding
a second run or version, and the alias moves only when it points elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ct.config import IMPORT_ROOT, PipelineConfig

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
TAG_PREFIX = "ct."
MODEL_NAME = "model"  # the name each training run logs its model under


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: pipeline, Airflow run, data and code versions, trigger."""

    pipeline: str
    dag_id: str
    run_id: str
    data_version: str
    training_data_version: str = ""
    code_version: str = ""
    trigger: str = "manual"
    reason: str = ""

    def tags(self) -> dict[str, str]:
        return {f"{TAG_PREFIX}{key}": str(value) for key, value in asdict(self).items() if value}


def code_version() -> str:
    """The deployed code's version: ``CT_CODE_VERSION`` or the git commit of the repo."""
    explicit = os.environ.get("CT_CODE_VERSION")
    if explicit:
        return explicit
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=IMPORT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def client() -> MlflowClient:
    """An MlflowClient on ``MLFLOW_TRACKING_URI``."""
    from mlflow import MlflowClient

    return MlflowClient()


def experiment_name(config: PipelineConfig) -> str:
    return config.dag_id


def ensure_experiment(config: PipelineConfig) -> str:
    """The pipeline's experiment id, created on first use."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(experiment_name(config))
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(mlflow.create_experiment(experiment_name(config)))
    except mlflow.exceptions.MlflowException:  # created concurrently
        experiment = mlflow.get_experiment_by_name(experiment_name(config))
        assert experiment is not None
        return str(experiment.experiment_id)


def _training_runs(config: PipelineConfig, lineage: Lineage, status: str, max_results: int) -> list[Any]:
    """Training runs of the same Airflow run on the same data, in the given MLflow status."""
    return list(
        client().search_runs(
            [ensure_experiment(config)],
            filter_string=(
                f"tags.`ct.run_id` = '{lineage.run_id}' and "
                f"tags.`ct.training_data_version` = '{lineage.training_data_version}' and "
                f"attributes.status = '{status}'"
            ),
            max_results=max_results,
        )
    )


def find_training_run(config: PipelineConfig, lineage: Lineage) -> str | None:
    """A finished training run of the same Airflow run on the same data, if a retry already made one."""
    runs = _training_runs(config, lineage, "FINISHED", max_results=1)
    return runs[0].info.run_id if runs else None


ABANDONED = f"{TAG_PREFIX}abandoned"


def close_abandoned_training_runs(config: PipelineConfig, lineage: Lineage) -> list[str]:
    """Mark KILLED the unfinished training runs an earlier attempt of the same Airflow run left
    behind (its process was killed), so the MLflow UI shows no run stuck at RUNNING."""
    closed = []
    for run in _training_runs(config, lineage, "RUNNING", max_results=100):
        run_id = run.info.run_id
        client().set_tag(run_id, ABANDONED, "its attempt died before finishing; a retry trains again")
        client().set_terminated(run_id, status="KILLED")
        log.warning("Training run %s of an earlier attempt never finished: marked KILLED", run_id)
        closed.append(run_id)
    return closed


def lineage_tags_of_run(run_id: str) -> dict[str, str]:
    """The ``ct.*`` lineage tags a training run carries (copied onto its model version)."""
    fields = {f"{TAG_PREFIX}{name}" for name in Lineage.__dataclass_fields__}
    tags = client().get_run(run_id).data.tags
    return {key: value for key, value in tags.items() if key in fields}


def get_champion(config: PipelineConfig) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None before the first promotion."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(config.registered_model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None


def register_version(config: PipelineConfig, run_id: str, tags: dict[str, str]) -> ModelVersion:
    """Register the run's model once; a retry returns the version an earlier attempt made."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    name = config.registered_model_name
    with contextlib.suppress(MlflowException):  # it already exists
        mlflow_client.create_registered_model(
            name, description=config.description or f"Continuous-training model of {config.dag_id}"
        )
    existing = mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        log.info("Run %s is already registered as %s v%s (retry)", run_id, name, version.version)
        return version
    import mlflow

    version = mlflow.register_model(f"models:/{logged_model_id(run_id)}", name, tags=tags)
    log.info("Registered %s version %s from run %s", name, version.version, run_id)
    return version


def logged_model_id(run_id: str) -> str:
    """The id of the model ``run_id`` logged, looked up by run on the server.

    MLflow 3 keeps a run's model as a LoggedModel. Registering through ``runs:/<run>/model``
    would page through every model the experiment ever logged under that name and warn that the
    run has no artifacts there; the model's own URI needs neither.
    """
    mlflow_client = client()
    experiment_id = mlflow_client.get_run(run_id).info.experiment_id
    models = mlflow_client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    if not models:
        raise LookupError(f"run {run_id} logged no model named {MODEL_NAME!r}")
    return str(models[0].model_id)


def version_tags(config: PipelineConfig, version: str) -> dict[str, str]:
    """The tags of ``version`` of the pipeline's registered model."""
    tags: dict[str, str] = client().get_model_version(config.registered_model_name, version).tags
    return tags


def set_version_tags(config: PipelineConfig, version: str, tags: dict[str, str]) -> None:
    mlflow_client = client()
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(config.registered_model_name, version, key, value)


def move_champion(config: PipelineConfig, version: str, reason: str) -> tuple[str | None, bool]:
    """Point ``champion`` at ``version``: returns (previous champion version, whether it moved).

    A repeated call for the version already holding the alias moves nothing.
    """
    previous = get_champion(config)
    # Stores differ on the version's type (a SQL store gives int, the REST client str).
    if previous is not None and str(previous.version) == str(version):
        log.info("champion already points at version %s: not moving it again", version)
        return str(previous.tags.get(f"{TAG_PREFIX}previous_champion") or "") or None, False
    previous_version = str(previous.version) if previous is not None else None
    set_version_tags(
        config,
        version,
        {
            f"{TAG_PREFIX}previous_champion": previous_version or "",
            f"{TAG_PREFIX}promotion_reason": reason,
        },
    )
    client().set_registered_model_alias(config.registered_model_name, CHAMPION_ALIAS, version)
    log.info("champion: %s -> %s (%s)", previous_version, version, reason)
    return previous_version, True


def set_champion_alias(config: PipelineConfig, version: str) -> None:
    """Point ``champion`` at ``version`` without the promotion bookkeeping (rollbacks)."""
    client().set_registered_model_alias(config.registered_model_name, CHAMPION_ALIAS, version)


def delete_champion_alias(config: PipelineConfig) -> None:
    """Remove ``champion`` (a first deployment that failed has nothing to fall back to)."""
    client().delete_registered_model_alias(config.registered_model_name, CHAMPION_ALIAS)


def champion_version_strict(config: PipelineConfig) -> str | None:
    """The champion's version; None only if the registry says there is none (errors propagate)."""
    from mlflow.exceptions import MlflowException

    try:
        version = client().get_model_version_by_alias(config.registered_model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(version.version)


def load_model(uri: str) -> Any:
    """Load a scikit-learn model logged by this project."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)


def download_json(run_id: str, artifact_path: str) -> Any | None:
    """A JSON artifact of a run, or None if it has none."""
    import json

    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
    except Exception:  # noqa: BLE001 - a missing artifact is an expected answer
        return None
    return json.loads(Path(local).read_text())


def ui_base_url() -> str | None:
    """The MLflow UI address for links: ``CT_MLFLOW_UI_URL`` or an http tracking URI."""
    explicit = os.environ.get("CT_MLFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else None


def run_url(experiment_id: str, run_id: str) -> str | None:
    base = ui_base_url()
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def model_version_url(name: str, version: str) -> str | None:
    base = ui_base_url()
    return f"{base}/#/models/{name}/versions/{version}" if base else None
