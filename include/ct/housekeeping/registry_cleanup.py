"""Retention in MLflow: registered versions beyond the newest K, and ``mlflow gc`` of deleted runs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from include.ct.config import PipelineConfig
from include.ct.housekeeping.protected import Protected
from include.ct.housekeeping.removals import Removal
from include.ct.registry import registry

log = logging.getLogger("ct.housekeeping")

BACKEND_STORE_ENV = "CT_MLFLOW_BACKEND_STORE_URI"


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
                f"{version.run_id} moves to MLflow's deleted stage",
            )
        )
    return removals


def delete_version(config: PipelineConfig, removal: Removal) -> None:
    """Delete a registered version and move its training run to MLflow's ``deleted`` stage
    (restorable with ``mlflow runs restore`` until ``mlflow gc`` purges it)."""
    client = registry.client()
    name, _, number = removal.target.rpartition("/")
    run_id = client.get_model_version(name, number).run_id
    client.delete_model_version(name, number)
    if run_id:
        client.delete_run(run_id)
    log.info("removed model_version %s (run %s deleted): %s", removal.target, run_id, removal.reason)


def mlflow_gc(older_than_days: float, *, dry_run: bool) -> str:
    """Purge runs deleted more than ``older_than_days`` ago with ``mlflow gc``; returns what happened."""
    backend = os.environ.get(BACKEND_STORE_ENV)
    if not backend:
        return f"mlflow gc skipped: {BACKEND_STORE_ENV} is not set (gc needs the backend store itself)"
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "gc",
        "--backend-store-uri",
        backend,
        "--older-than",
        f"{int(older_than_days * 24 * 3600)}s",
    ]
    if dry_run:
        return f"mlflow gc would run: {' '.join(command[:2])} --older-than {command[-1]}"
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if completed.returncode != 0:
        raise RuntimeError(f"mlflow gc failed ({completed.returncode}): {completed.stderr.strip()[-2000:]}")
    return f"mlflow gc purged runs deleted over {older_than_days:g} days ago"
