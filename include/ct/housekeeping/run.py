"""One housekeeping pass over a pipeline: compact the prediction log, then remove what retention
allows, after reading from the registry what must stay.

The registry is read before anything is touched: if MLflow cannot be reached, the pass fails
and removes nothing. A dry run measures and lists everything without changing anything.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig
from include.ct.housekeeping.files import (
    expired_labels,
    expired_log_days,
    expired_quarantine,
    expired_reports,
    prunable_snapshots,
)
from include.ct.housekeeping.protected import protected_lineage
from include.ct.housekeeping.registry_cleanup import delete_version, mlflow_gc, surplus_versions
from include.ct.housekeeping.removals import Removal, remove_path
from include.ct.monitoring.compaction import HourCompaction, compact_day
from include.ct.monitoring.prediction_log import day_folders
from include.ct.registry import registry

log = logging.getLogger("ct.housekeeping")

HOUSEKEEPING_KIND = "housekeeping"


@dataclass
class HousekeepingReport:
    """What one pass compacted and removed (or, dry, would), and what it kept on purpose."""

    pipeline: str
    dry_run: bool
    ran_at: str
    protected: dict[str, str] = field(default_factory=dict)
    compactions: list[HourCompaction] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        compacted = sum(c.bytes_before - c.bytes_after for c in self.compactions if not self.dry_run)
        return sum(removal.bytes for removal in self.removals) + compacted

    @property
    def files_compacted(self) -> int:
        return sum(c.files for c in self.compactions)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        kinds: dict[str, int] = {}
        for removal in self.removals:
            kinds[removal.kind] = kinds.get(removal.kind, 0) + 1
        removed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) or "nothing removed"
        return (
            f"Housekeeping{' (dry run)' if self.dry_run else ''}: {verb} {self.bytes_freed / 2**20:.1f} MiB; "
            f"{removed}; {self.files_compacted} log files compacted into {len(self.compactions)} hours"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "dry_run": self.dry_run,
            "ran_at": self.ran_at,
            "protected": self.protected,
            "compactions": [c.to_dict() for c in self.compactions],
            "removals": [r.to_dict() for r in self.removals],
            "notes": self.notes,
            "bytes_freed": self.bytes_freed,
            "files_compacted": self.files_compacted,
            "summary": self.summary(),
        }


def housekeep(
    config: PipelineConfig, *, now: datetime | None = None, dry_run: bool = False
) -> HousekeepingReport:
    """Compact closed hours of the prediction log and remove what the ``retention`` rules allow."""
    now = now or datetime.now(UTC)
    protected = protected_lineage(config)  # MLflow unreachable: raises before anything changes
    surplus = surplus_versions(config, protected)
    report = HousekeepingReport(config.name, dry_run, now.isoformat(), protected=dict(protected.versions))
    expired_days = expired_log_days(config, now)
    expiring = {removal.target for removal in expired_days}
    closed_before = now - timedelta(hours=config.retention.compact_after_hours)
    for day in day_folders(config.name):
        if str(day) not in expiring:
            report.compactions.extend(compact_day(day, closed_before=closed_before, dry_run=dry_run))
    files = [
        *expired_days,
        *prunable_snapshots(config, protected, now),
        *expired_reports(config, protected, now),
        *expired_quarantine(config, now),
        *expired_labels(config, now),
    ]
    report.removals = [*files, *surplus]
    for removal in report.removals:
        log.info(
            "%s %s %s: %s",
            "would remove" if dry_run else "removing",
            removal.kind,
            removal.target,
            removal.reason,
        )
    if not dry_run:
        for removal in files:
            remove_path(removal)
        for removal in surplus:
            delete_version(config, removal, now)
    report.notes.append(mlflow_gc(config, now, dry_run=dry_run))
    log.info("%s", report.summary())
    return report


def record(config: PipelineConfig, report: HousekeepingReport) -> str | None:
    """Log the pass to MLflow (bytes freed, files compacted, the full list); returns the run's URL."""
    import mlflow

    experiment_id = registry.ensure_experiment(config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"housekeeping {report.ran_at[:16]}") as run:
        mlflow.set_tags(
            {"ct.kind": HOUSEKEEPING_KIND, "ct.pipeline": config.name, "ct.dry_run": str(report.dry_run)}
        )
        mlflow.log_metrics(
            {
                "bytes_freed": report.bytes_freed,
                "files_compacted": report.files_compacted,
                "hours_compacted": len(report.compactions),
                "removals": len(report.removals),
            }
        )
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "housekeeping.json").write_text(json.dumps(report.to_dict(), indent=2))
            mlflow.log_artifacts(folder, HOUSEKEEPING_KIND)
        return registry.run_url(experiment_id, run.info.run_id)
