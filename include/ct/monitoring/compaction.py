"""Compact the prediction log: one file per pipeline per hour instead of one per flush.

The service flushes a file every few seconds (tens of thousands a day); readers pay per file.
A closed hour's files are rewritten as one, committed by a manifest that names the files it
replaces: readers take the compacted file and skip those from the moment the manifest exists,
so no row is ever read twice or missed, and the live service keeps writing new files meanwhile.
A crash leaves either an uncommitted file (ignored, removed next time) or a committed one whose
sources are removed next time.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.ct.monitoring.prediction_log import COMPACTED_PREFIX, COMPACTION_MANIFEST_PREFIX
from include.ct.storage import write_json_atomic

log = logging.getLogger(__name__)

ORPHAN_AGE = timedelta(hours=1)  # an uncommitted compacted file this old belongs to a crashed run


@dataclass
class HourCompaction:
    """One hour of one day compacted (or, in a dry run, that would be)."""

    day: str
    hour: str
    files: int
    rows: int
    bytes_before: int
    bytes_after: int
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _manifests(day: Path) -> list[dict[str, Any]]:
    records = []
    for manifest in sorted(day.glob(f"{COMPACTION_MANIFEST_PREFIX}*.json")):
        try:
            records.append({**json.loads(manifest.read_text()), "manifest": manifest.name})
        except (OSError, ValueError):
            continue
    return records


def _hour_of(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(minute=0, second=0, microsecond=0)


def finish_committed(day: Path) -> int:
    """Remove the sources of committed compactions still on disk (a run that stopped after its
    commit); returns how many were removed."""
    removed = 0
    for record in _manifests(day):
        for name in record["sources"]:
            source = day / name
            if source.exists():
                source.unlink(missing_ok=True)
                removed += 1
    return removed


def compact_day(day: Path, *, closed_before: datetime, dry_run: bool = False) -> list[HourCompaction]:
    """Compact every hour of ``day`` that ended before ``closed_before`` and has two or more files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not dry_run:
        finish_committed(day)
        _remove_orphans(day, closed_before)
    covered = {name for record in _manifests(day) for name in record["sources"]}
    hours: dict[datetime, list[Path]] = {}
    for path in sorted(day.glob("part-*.parquet")):
        if path.name in covered:
            continue
        try:
            hour = _hour_of(path)
        except FileNotFoundError:
            continue
        if hour + timedelta(hours=1) <= closed_before:
            hours.setdefault(hour, []).append(path)
    done = []
    for hour, sources in sorted(hours.items()):
        if len(sources) < 2:
            continue
        label = f"{hour:%H}"
        size_before = sum(path.stat().st_size for path in sources)
        if dry_run:
            rows = sum(pq.ParquetFile(path).metadata.num_rows for path in sources)
            done.append(HourCompaction(day.name, label, len(sources), rows, size_before, 0, ""))
            continue
        table = pa.concat_tables([pq.read_table(path) for path in sources], promote_options="permissive")
        name = f"{COMPACTED_PREFIX}{label}-{uuid.uuid4().hex[:10]}.parquet"
        temporary = day / f".{name}.tmp"
        pq.write_table(table, temporary)
        temporary.rename(day / name)
        write_json_atomic(
            day / f"{COMPACTION_MANIFEST_PREFIX}{label}-{uuid.uuid4().hex[:10]}.json",
            {"file": name, "sources": [path.name for path in sources], "rows": table.num_rows, "hour": label},
        )  # the commit: from here readers read ``name`` instead of the sources
        for path in sources:
            path.unlink(missing_ok=True)
        result = HourCompaction(
            day.name,
            label,
            len(sources),
            table.num_rows,
            size_before,
            (day / name).stat().st_size,
            str(day / name),
        )
        log.info(
            "compacted %s hour %s: %d files, %d rows, %d -> %d bytes",
            day,
            label,
            result.files,
            result.rows,
            result.bytes_before,
            result.bytes_after,
        )
        done.append(result)
    return done


def _remove_orphans(day: Path, now: datetime) -> None:
    """Compacted files no manifest commits, left by a run that stopped before its commit."""
    committed = {record["file"] for record in _manifests(day)}
    for path in [*day.glob(f"{COMPACTED_PREFIX}*.parquet"), *day.glob(f".{COMPACTED_PREFIX}*.tmp")]:
        try:
            old = datetime.fromtimestamp(path.stat().st_mtime, UTC) < now - ORPHAN_AGE
        except FileNotFoundError:
            continue
        if path.name not in committed and old:
            log.warning("removing %s: a compaction that never committed", path)
            path.unlink(missing_ok=True)
