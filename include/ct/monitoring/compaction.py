"""Compact the prediction log: one file per pipeline per hour instead of one per flush.

The service flushes a file every few seconds (tens of thousands a day); readers pay per file.
A closed hour's files are rewritten as one, committed by a manifest that names the files it
replaces: readers take the compacted file and skip those from the moment the manifest exists,
so no row is ever read twice or missed, and the live service keeps writing new files meanwhile.
A crash leaves either an uncommitted file (ignored, removed next time) or a committed one whose
sources are removed next time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.ct.monitoring.prediction_log import BATCH_PREFIX, COMPACTED_PREFIX, COMPACTION_MANIFEST_PREFIX
from include.ct.storage import write_json_atomic

log = logging.getLogger(__name__)

LOCK = ".compaction.lock"
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


@contextlib.contextmanager
def _day_lock(day: Path) -> Iterator[None]:
    """One compaction per day folder at a time (two would commit the same files twice)."""
    with (day / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact_day(day: Path, *, closed_before: datetime, dry_run: bool = False) -> list[HourCompaction]:
    """Compact every hour of ``day`` that ended before ``closed_before`` and has two or more files.

    An hour that cannot be compacted (unreadable file, clashing column types) is logged with its
    files and left as it is; the other hours and the rest of housekeeping go on.
    """
    if dry_run:
        return _compact(day, closed_before, dry_run=True)
    with _day_lock(day):
        finish_committed(day)
        _remove_orphans(day, closed_before)
        return _compact(day, closed_before, dry_run=False)


def _compact(day: Path, closed_before: datetime, *, dry_run: bool) -> list[HourCompaction]:
    covered = {name for record in _manifests(day) for name in record["sources"]}
    hours: dict[datetime, list[Path]] = {}
    for path in sorted(day.glob("part-*.parquet")):
        if path.name in covered or path.name.startswith(BATCH_PREFIX):
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
        try:
            done.append(_compact_hour(day, f"{hour:%H}", sources, dry_run=dry_run))
        except Exception as exc:  # noqa: BLE001 - one bad hour must not stop the rest
            log.error(
                "could not compact %s hour %s (%d files, e.g. %s): %s: %s",
                day,
                f"{hour:%H}",
                len(sources),
                sources[0].name,
                type(exc).__name__,
                exc,
            )
    return done


def _compact_hour(day: Path, label: str, sources: list[Path], *, dry_run: bool) -> HourCompaction:
    import pyarrow as pa
    import pyarrow.parquet as pq

    size_before = sum(path.stat().st_size for path in sources)
    if dry_run:
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in sources)
        return HourCompaction(day.name, label, len(sources), rows, size_before, 0, "")
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
    return result


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
