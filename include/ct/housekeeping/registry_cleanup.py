"""Retention in MLflow: registered versions beyond the newest K, and ``mlflow gc`` of deleted runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from include.ct.config import PipelineConfig
from include.ct.housekeeping.protected import Protected
from include.ct.housekeeping.removals import Removal
from include.ct.registry import registry
from include.ct.storage import pipeline_paths, write_json_atomic

log = logging.getLogger("ct.housekeeping")

BACKEND_STORE_ENV = "CT_MLFLOW_BACKEND_STORE_URI"
DELETED_STATE = "housekeeping_deleted.json"  # runs and logged models deleted here, awaiting gc


def surplus_versions(config: PipelineConfig, protected: Protected) -> list[Removal]:
    """Registered versions older than the newest ``retention.model_versions_keep``, except protected ones."""
    keep = config.retention.model_versions_keep
    name = config.registered_model_name
    versions = registry.client().search_model_versions(f"name = '{name}'")
    ordered = sorted(versions, key=lambda version: int(version.version), reverse=True)
    removals = []
    for version in ordered[keep:]:
        number = str(version.version)
        if number in protected.versions:
            continue
        removals.append(
            Removal(
                "model_version",
                f"{name}/{number}",
                f"older than the newest retention.model_versions_keep ({keep}) versions; its run "
                f"{version.run_id} and logged model move to MLflow's deleted stage",
            )
        )
    return removals


def _deleted_state(config: PipelineConfig) -> Path:
    return pipeline_paths(config).artifacts / DELETED_STATE


def delete_version(config: PipelineConfig, removal: Removal, now: datetime) -> None:
    """Delete a registered version; move its training run and its logged model to MLflow's
    ``deleted`` stage (restorable until ``mlflow gc`` purges them) and remember them for that."""
    client = registry.client()
    name, _, number = removal.target.rpartition("/")
    version = client.get_model_version(name, number)
    model_id = getattr(version, "model_id", None) or ""
    client.delete_model_version(name, number)
    if version.run_id:
        client.delete_run(version.run_id)
    if model_id:
        client.delete_logged_model(model_id)
    path = _deleted_state(config)
    state = json.loads(path.read_text()) if path.exists() else {}
    state[version.run_id or model_id] = {"deleted_at": now.isoformat(), "logged_model_id": model_id}
    write_json_atomic(path, state)
    log.info(
        "removed model_version %s (run %s, model %s deleted): %s",
        removal.target,
        version.run_id,
        model_id,
        removal.reason,
    )


def mlflow_gc(config: PipelineConfig, now: datetime, *, dry_run: bool) -> str:
    """Purge with ``mlflow gc`` the runs and logged models this housekeeping deleted more than
    ``retention.mlflow_gc_days`` ago (only those: never what someone else deleted)."""
    days = config.retention.mlflow_gc_days
    path = _deleted_state(config)
    state: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    cutoff = now - timedelta(days=days)
    due = {
        run: entry for run, entry in state.items() if datetime.fromisoformat(entry["deleted_at"]) <= cutoff
    }
    if not due:
        return f"mlflow gc: nothing deleted over {days:g} days ago"
    backend = os.environ.get(BACKEND_STORE_ENV)
    if not backend:
        return f"mlflow gc skipped: {BACKEND_STORE_ENV} is not set (gc needs the backend store itself)"
    runs = [run for run, entry in due.items() if run != entry["logged_model_id"]]
    models = [entry["logged_model_id"] for entry in due.values() if entry["logged_model_id"]]
    command = [str(Path(sys.executable).with_name("mlflow")), "gc", "--backend-store-uri", backend]
    if runs:
        command += ["--run-ids", ",".join(runs)]
    if models:
        command += ["--logged-model-ids", ",".join(models)]
    if dry_run:
        return f"mlflow gc would purge {len(runs)} runs and {len(models)} logged models"
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if completed.returncode != 0:
        raise RuntimeError(f"mlflow gc failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    write_json_atomic(path, {run: entry for run, entry in state.items() if run not in due})
    return f"mlflow gc purged {len(runs)} runs and {len(models)} logged models deleted over {days:g} days ago"
