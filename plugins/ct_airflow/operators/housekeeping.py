"""Housekeeping: retention per pipeline (``include.ct.housekeeping``) and ``airflow db clean``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from ct_airflow.links import MlflowRunLink, set_link
from ct_airflow.operators.base import PipelineOperator


def _as_bool(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class HousekeepingOperator(PipelineOperator):
    """Compact the pipeline's prediction log and remove what its ``retention`` allows; the champion,
    its rollback target, a staged challenger and their training data always stay.

    Every removal is logged with its reason; bytes freed and files compacted go to an MLflow run
    (linked) with the full list. A dry run measures and lists without changing anything.

    :param dry_run: list what would go, remove nothing (templated: ``"{{ params.dry_run }}"``).
    """

    template_fields: Sequence[str] = ("pipeline", "dry_run")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#f0f0f0"

    def __init__(self, *, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.housekeeping.run import housekeep, record

        config = self.load_config()
        report = housekeep(config, dry_run=_as_bool(self.dry_run))
        set_link(self, MlflowRunLink, record(config, report))
        for note in report.notes:
            self.log.info("%s", note)
        self.log.info("%s", report.summary())
        return {
            "pipeline": config.name,
            "summary": report.summary(),
            "bytes_freed": report.bytes_freed,
            "files_compacted": report.files_compacted,
            "removals": len(report.removals),
            "dry_run": report.dry_run,
        }


class AirflowDbCleanOperator(BaseOperator):
    """``airflow db clean`` of metadata (runs, task instances, logs' records, XComs) older than
    ``keep_days``, without archive tables; with ``dry_run`` it only reports what it would remove.

    :param keep_days: how many days of metadata stay.
    :param dry_run: report only (templated).
    """

    template_fields: Sequence[str] = ("dry_run",)
    ui_color = "#f0f0f0"

    def __init__(self, *, keep_days: float, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_days = keep_days
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict[str, Any]:
        before = datetime.now(UTC) - timedelta(days=self.keep_days)
        command = [
            str(Path(sys.executable).with_name("airflow")),
            "db",
            "clean",
            "--clean-before-timestamp",
            before.isoformat(),
            "--skip-archive",
            "--yes",
        ]
        if _as_bool(self.dry_run):
            command.append("--dry-run")
        self.log.info("running %s", " ".join(command[1:]))
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
        for line in (completed.stdout + completed.stderr).splitlines():
            self.log.info("%s", line)
        if completed.returncode != 0:
            raise RuntimeError(f"airflow db clean failed with exit code {completed.returncode}")
        return {"clean_before": before.isoformat(), "dry_run": _as_bool(self.dry_run)}
