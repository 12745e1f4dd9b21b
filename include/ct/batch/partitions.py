"""Which day a batch-scoring run scores, where its input and output live, and the atomic swap.

A partition is one day. Every run for a day reads that day's whole input and replaces that
day's whole output, so a retry, a re-run or a re-score by a new champion never duplicates rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from include.ct.config import BatchSpec, PipelineConfig
from include.ct.storage import data_dir, pipeline_paths

PARTITION = "date"
MANIFEST = "_manifest.json"  # names starting with '_' or '.' are skipped by Parquet readers


class BatchConfigError(ValueError):
    """The pipeline has no ``batch:`` section, or a run asked for an impossible partition."""


def batch_spec(config: PipelineConfig) -> BatchSpec:
    """The pipeline's ``batch:`` section, or a clear error naming the pipeline."""
    if config.batch is None:
        raise BatchConfigError(f"pipeline '{config.name}' has no 'batch:' section")
    return config.batch


def score_date(
    requested: str | None,
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
) -> date:
    """The day a run scores: the one asked for, else its data interval's first day, else (runs
    without an interval: manual, new champion) the last complete day before it started."""
    if requested:
        try:
            return date.fromisoformat(str(requested))
        except ValueError as exc:
            raise BatchConfigError(f"date {requested!r} is not YYYY-MM-DD") from exc
    if interval_start is not None and interval_end is not None and interval_start < interval_end:
        return interval_start.astimezone(UTC).date()
    return (run_after.astimezone(UTC) - timedelta(days=1)).date()


def day_window(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of ``day`` in UTC: the rows a SQL source gives that partition."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_name(day: date) -> str:
    return f"{PARTITION}={day.isoformat()}"


def input_root(config: PipelineConfig) -> Path:
    """Folder of the file source: one ``date=YYYY-MM-DD`` folder per day."""
    return data_dir() / (batch_spec(config).source.path or f"batch/{config.name}")


def output_root(config: PipelineConfig) -> Path:
    """Folder of the Parquet output: one ``date=YYYY-MM-DD`` folder per day (Hive style)."""
    return data_dir() / (batch_spec(config).output.path or f"scores/{config.name}")


def work_dir(config: PipelineConfig, day: date) -> Path:
    """Artifact storage of one day's scoring: a landed SQL window, validation reports, requests."""
    return pipeline_paths(config).artifacts / "batch" / partition_name(day)


def staging_dir(final: Path, token: str | None = None) -> Path:
    """A hidden sibling of ``final`` that a run writes into before the swap."""
    return final.with_name(f".{final.name}.{token or uuid.uuid4().hex[:12]}.staging")


def publish(staging: Path, final: Path) -> None:
    """Replace ``final`` with ``staging``: readers see the old partition or the new one, never a mix.

    Two renames (a directory cannot be replaced in one): between them the day is absent for
    microseconds. A crash in between leaves the old copy hidden, and the next run rewrites the day.
    """
    old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.old")
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    for leftover in final.parent.glob(f".{final.name}.*.old"):  # from a run that crashed
        shutil.rmtree(leftover, ignore_errors=True)
