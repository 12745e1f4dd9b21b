"""Retention of a pipeline's files: prediction-log days, snapshots, splits, reports, quarantine."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from include.ct.config import PipelineConfig
from include.ct.data.extract import MANIFEST, accepted_versions
from include.ct.housekeeping.protected import Protected
from include.ct.housekeeping.removals import Removal, measured
from include.ct.monitoring.prediction_log import day_folders
from include.ct.storage import pipeline_paths


def _older(path: Path, cutoff: datetime) -> bool:
    try:
        return path.stat().st_mtime < cutoff.timestamp()
    except FileNotFoundError:
        return False


def expired_log_days(config: PipelineConfig, now: datetime) -> list[Removal]:
    """Prediction-log days wholly before the horizon (longer than the monitor's label window)."""
    horizon = config.retention.prediction_log_days
    first_kept = (now - timedelta(days=horizon)).strftime("%Y-%m-%d")
    return [
        measured("prediction_log_day", day, f"older than retention.prediction_log_days ({horizon:g} days)")
        for day in day_folders(config.name)
        if day.name.removeprefix("date=") < first_kept
    ]


def snapshots_to_keep(config: PipelineConfig) -> int | None:
    """How many of the newest accepted snapshots stay (None: all of them)."""
    return config.retention.snapshots_keep or config.training.window


def prunable_snapshots(config: PipelineConfig, protected: Protected, now: datetime) -> list[Removal]:
    """Accepted snapshots no training window reaches any more (with their archived batch files),
    never one in a protected version's lineage; snapshots never accepted go with the quarantine."""
    paths = pipeline_paths(config)
    removals: list[Removal] = []
    accepted = accepted_versions(config)
    keep = snapshots_to_keep(config)
    if keep is not None:
        for version in accepted[: max(0, len(accepted) - keep)]:
            if version in protected.snapshots:
                continue
            reason = (
                f"outside the newest {keep} accepted snapshots (the training window), "
                "in no kept model's lineage"
            )
            for kind, path in (
                ("snapshot", paths.snapshots / version),
                ("archived_batch", paths.archive / version),
                ("acceptance", paths.accepted / f"{version}.json"),
            ):
                if path.exists():
                    removals.append(measured(kind, path, reason))
    quarantine_days = config.retention.quarantine_days
    quarantine_cutoff = now - timedelta(days=quarantine_days)
    accepted_set = set(accepted)
    if paths.snapshots.is_dir():
        for folder in sorted(paths.snapshots.iterdir()):
            manifest = folder / MANIFEST
            if folder.name in accepted_set or not manifest.exists() or folder.name in protected.snapshots:
                continue
            if _older(manifest, quarantine_cutoff):
                removals.append(
                    measured(
                        "rejected_snapshot",
                        folder,
                        f"never accepted, older than retention.quarantine_days ({quarantine_days:g} days)",
                    )
                )
    return removals


def expired_reports(config: PipelineConfig, protected: Protected, now: datetime) -> list[Removal]:
    """Validation reports (with their Data Docs) and held-out splits older than their horizon;
    the splits of protected versions stay (their deploy and rollback checks read them)."""
    paths = pipeline_paths(config)
    days = config.retention.reports_days
    cutoff = now - timedelta(days=days)
    removals = []
    for folder in sorted(paths.reports.iterdir()) if paths.reports.is_dir() else []:
        if folder.is_dir() and _older(folder, cutoff):
            removals.append(measured("report", folder, f"older than retention.reports_days ({days:g} days)"))
    for folder in sorted(paths.splits.iterdir()) if paths.splits.is_dir() else []:
        if folder.is_dir() and folder.name not in protected.training_data_versions and _older(folder, cutoff):
            removals.append(
                measured(
                    "split", folder, f"older than retention.reports_days ({days:g} days), no kept model's"
                )
            )
    return removals


def expired_quarantine(config: PipelineConfig, now: datetime) -> list[Removal]:
    """Quarantined files and their reports older than ``retention.quarantine_days``."""
    folder = pipeline_paths(config).quarantine
    days = config.retention.quarantine_days
    cutoff = now - timedelta(days=days)
    return [
        measured("quarantine", path, f"older than retention.quarantine_days ({days:g} days)")
        for path in (sorted(folder.iterdir()) if folder.is_dir() else [])
        if _older(path, cutoff)
    ]


def expired_labels(config: PipelineConfig, now: datetime) -> list[Removal]:
    """Label files older than the prediction log they join to (``retention.prediction_log_days``)."""
    from include.ct.monitoring.monitor import labels_dir

    days = config.retention.prediction_log_days
    cutoff = now - timedelta(days=days)
    folder = labels_dir(config)
    return [
        measured("labels", path, f"older than retention.prediction_log_days ({days:g} days): nothing to join")
        for path in (sorted(folder.iterdir()) if folder.is_dir() else [])
        if path.is_file() and _older(path, cutoff)
    ]


def describe(removals: list[Removal]) -> str:
    """The removals as JSON lines, for logs and the dry run."""
    return "\n".join(json.dumps(removal.to_dict(), sort_keys=True) for removal in removals)
