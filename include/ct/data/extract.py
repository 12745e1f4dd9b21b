"""Extract: turn the batches waiting in the landing zone into one immutable Parquet snapshot.

The snapshot's content hash is the data version; the same files always give the same version,
so a retried or repeated extract never duplicates data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from include.ct.config import PipelineConfig
from include.ct.storage import file_sha256, pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

BATCH_SUFFIXES = (".csv", ".parquet")
MANIFEST = "manifest.json"


class NoNewDataError(Exception):
    """Nothing arrived since the last run and the run was not forced."""


@dataclass
class BatchInfo:
    """One arrived file and what extract made of it."""

    file: str
    sha256: str
    rows: int | None = None
    part: str | None = None
    read_error: str | None = None
    read_rule: str | None = None


@dataclass
class Snapshot:
    """An immutable snapshot of the batches one run consumes."""

    pipeline: str
    data_version: str
    path: str
    batches: list[BatchInfo] = field(default_factory=list)
    new_data: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Snapshot:
        batches = [BatchInfo(**batch) for batch in payload.get("batches", [])]
        return cls(**{**payload, "batches": batches})

    @property
    def rows(self) -> int:
        return sum(batch.rows or 0 for batch in self.batches)


def batch_files(folder: Path) -> list[Path]:
    """The ``*.csv`` and ``*.parquet`` files in ``folder`` by name; names starting with '.' or '_'
    are partial uploads and ignored."""
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in BATCH_SUFFIXES and not path.name.startswith((".", "_"))
    )


def pending_batches(config: PipelineConfig) -> list[Path]:
    """Batch files waiting in the landing zone, oldest name first; partial uploads are ignored."""
    return batch_files(pipeline_paths(config).landing)


class UnreadableBatchError(Exception):
    """A batch file that cannot become a table; ``rule`` names what it breaks."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def read_batch(path: Path, max_mb: float | None = None) -> pd.DataFrame:
    """Read one batch file as delivered, without coercing it to the schema.

    Raises UnreadableBatchError naming the broken rule: over the size limit (never loaded),
    empty, not UTF-8, not parseable CSV or not a readable Parquet file.
    """
    size = path.stat().st_size
    if max_mb is not None and size > max_mb * 1024 * 1024:
        raise UnreadableBatchError(
            "within size limit",
            f"{size / 1024 / 1024:.1f} MB is over source.max_batch_mb ({max_mb:g} MB); not loaded: "
            "split it into smaller batches upstream or raise the limit",
        )
    if size == 0:
        raise UnreadableBatchError("not empty", "the file is empty (0 bytes)")
    if path.suffix.lower() == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several kinds for a broken file
            raise UnreadableBatchError("readable Parquet", f"{type(exc).__name__}: {exc}") from exc
    try:
        return pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableBatchError(
            "UTF-8 encoding",
            f"byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start} is not UTF-8: "
            "export the file as UTF-8",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise UnreadableBatchError("not empty", "no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise UnreadableBatchError("parseable CSV", str(exc).strip()) from exc


def data_version_of(hashes: list[tuple[str, str]]) -> str:
    """Content hash over (file name, file hash) pairs: the data version."""
    digest = hashlib.sha256()
    for name, sha in sorted(hashes):
        digest.update(f"{name}\0{sha}\n".encode())
    return digest.hexdigest()[:16]


def extract(config: PipelineConfig, *, force: bool = False, only: Sequence[str] | None = None) -> Snapshot:
    """Snapshot every pending batch (or only the named ones); with none, raise NoNewDataError
    unless ``force``.

    A SQL source first lands its window as a batch file (``land_sql_window``), so both kinds of
    source share validation, quarantine and archiving. A backfill run snapshots only its own
    window (``only``), so backfill runs running side by side never take each other's rows.
    """
    paths = pipeline_paths(config)
    files = pending_batches(config)
    if only is not None:
        files = [path for path in files if path.name in set(only)]
    if not files:
        if not force:
            raise NoNewDataError(f"no new batch in {paths.landing}")
        accepted = accepted_versions(config)
        if not accepted:
            raise NoNewDataError(
                f"forced run, but no batch in {paths.landing} and no accepted data to retrain on"
            )
        log.info("Forced run without new data: retraining on %d accepted snapshots", len(accepted))
        version = accepted_set_version(accepted)
        return Snapshot(config.name, version, str(paths.snapshots), [], new_data=False)

    hashes = [(path.name, file_sha256(path)) for path in files]
    version = data_version_of(hashes)
    target = paths.snapshots / version
    manifest = target / MANIFEST
    if manifest.exists():
        log.info("Snapshot %s already exists (a retry or a repeated trigger): reusing it", version)
        return Snapshot.from_dict(_read_json(manifest))

    staging = paths.snapshots / f".{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "parts").mkdir(parents=True)
    batches: list[BatchInfo] = []
    for index, (path, (_, sha)) in enumerate(zip(files, hashes, strict=True), start=1):
        info = BatchInfo(file=path.name, sha256=sha)
        try:
            frame = read_batch(path, config.source.max_batch_mb)
            part = f"parts/{index:05d}-{path.stem}.parquet"
            frame.to_parquet(staging / part, index=False)
            info.rows, info.part = len(frame), part
            log.info("Batch %d/%d %s: %d rows", index, len(files), path.name, len(frame))
        except UnreadableBatchError as exc:
            info.read_rule, info.read_error = exc.rule, str(exc)
            log.warning("Batch %s breaks '%s': %s", path.name, exc.rule, exc)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not fatal here
            info.read_rule, info.read_error = "readable", f"{type(exc).__name__}: {exc}"
            log.warning("Batch %s cannot be read: %s", path.name, info.read_error)
        batches.append(info)

    snapshot = Snapshot(config.name, version, str(target), batches, new_data=True)
    write_json_atomic(staging / MANIFEST, snapshot.to_dict())
    if target.exists():  # a concurrent run finished the same snapshot first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(target)
    log.info("Snapshot %s: %d batches, %d rows", version, len(batches), snapshot.rows)
    return snapshot


SQL_WATERMARK = "sql_watermark.json"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sql_watermark(config: PipelineConfig) -> datetime | None:
    """End of the last incrementally extracted SQL window, or None before the first one."""
    path = pipeline_paths(config).artifacts / SQL_WATERMARK
    return datetime.fromisoformat(_read_json(path)["end"]) if path.exists() else None


def sql_batch_name(start: datetime, end: datetime) -> str:
    """The landing-zone file a SQL window is landed as."""
    return f"sql_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.parquet"


def sql_window(
    config: PipelineConfig,
    interval_start: datetime | None,
    interval_end: datetime | None,
    run_after: datetime,
    *,
    incremental: bool = True,
) -> tuple[datetime, datetime]:
    """The ``[start, end)`` of source rows a run extracts.

    Incremental runs (scheduled, data-arrival, monitor-triggered) start at the watermark, where
    the last incremental window ended (the first one at the epoch), and end at their interval
    end or, without an interval, at their run time: consecutive runs neither overlap nor leave
    a gap. Other runs (backfills, manual runs for a chosen date) extract exactly their interval.
    """
    has_interval = interval_start is not None and interval_end is not None and interval_start < interval_end
    if has_interval and not incremental:
        return interval_start, interval_end  # type: ignore[return-value]
    watermark = sql_watermark(config)
    start = watermark or EPOCH  # the first incremental run reads the whole history
    end = interval_end if has_interval and interval_end is not None else run_after
    return start, max(start, end)


def land_sql_window(
    config: PipelineConfig,
    engine: Any,
    start: datetime,
    end: datetime,
    *,
    advance_watermark: bool = True,
) -> Path | None:
    """Run the source query for ``[start, end)`` and land its rows as one Parquet batch.

    Idempotent: a window already landed, archived or quarantined is not read again. Returns the
    batch file, or None when the window holds no rows (or was consumed before). An incremental
    window moves the watermark forward (never back); a backfill leaves it where it is.
    """
    import sqlalchemy

    paths = pipeline_paths(config)
    name = sql_batch_name(start, end)
    consumed = [paths.landing / name, *paths.archive.rglob(name), *paths.quarantine.rglob(name)]
    if any(path.exists() for path in consumed):
        log.info("window %s .. %s was already extracted (%s)", start, end, name)
        return None
    frame = pd.DataFrame()
    if start < end:
        query = sqlalchemy.text(str(config.source.query))
        with engine.connect() as connection:
            frame = pd.read_sql(query, connection, params={"start": start, "end": end})
    log.info("%s: %d rows in %s .. %s from %s", config.name, len(frame), start, end, config.source.conn_id)
    if not frame.empty:
        paths.landing.mkdir(parents=True, exist_ok=True)
        staging = paths.landing / f".{name}.tmp"  # dot-files are never read as batches
        frame.to_parquet(staging, index=False)
        staging.rename(paths.landing / name)
    watermark = sql_watermark(config)
    if advance_watermark and end > EPOCH and (watermark is None or end > watermark):
        write_json_atomic(paths.artifacts / SQL_WATERMARK, {"end": end.isoformat()})
    return paths.landing / name if not frame.empty else None


def _read_json(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(path.read_text())
    return payload


def accepted_set_version(versions: list[str]) -> str:
    """The data version of a training set made of several accepted snapshots."""
    return data_version_of([(version, version) for version in versions])


def accepted_versions(config: PipelineConfig) -> list[str]:
    """Data versions that passed validation, in acceptance order."""
    accepted = pipeline_paths(config).accepted
    if not accepted.is_dir():
        return []
    records = [_read_json(path) for path in accepted.glob("*.json")]
    records.sort(key=lambda record: (record.get("accepted_at", ""), record["data_version"]))
    return [record["data_version"] for record in records]


def load_training_snapshots(config: PipelineConfig) -> list[tuple[str, pd.DataFrame]]:
    """(data version, rows) of each accepted snapshot inside the training window, oldest first."""
    versions = accepted_versions(config)
    if config.training.window:
        versions = versions[-config.training.window :]
    if not versions:
        raise NoNewDataError(f"pipeline '{config.name}' has no accepted data yet")
    paths = pipeline_paths(config)
    snapshots = []
    for version in versions:
        snapshot = Snapshot.from_dict(_read_json(paths.snapshots / version / MANIFEST))
        parts = [
            pd.read_parquet(Path(snapshot.path) / batch.part) for batch in snapshot.batches if batch.part
        ]
        if parts:  # an unreadable batch has no part: it was quarantined, not accepted
            snapshots.append((version, pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]))
    if not snapshots:
        raise NoNewDataError(f"pipeline '{config.name}' has no readable accepted data")
    return snapshots


def load_training_data(config: PipelineConfig) -> tuple[pd.DataFrame, str, list[str]]:
    """All accepted snapshots inside the training window, their combined version and members."""
    snapshots = load_training_snapshots(config)
    versions = [version for version, _ in snapshots]
    frame = pd.concat([rows for _, rows in snapshots], ignore_index=True)
    return frame, accepted_set_version(versions), versions
