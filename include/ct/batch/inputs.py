"""The rows one day of batch scoring reads: a date folder of files, or a SQL window landed as Parquet.

The input's content hash is its data version, carried on every output row; reading is chunked
so no step holds the whole table.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from include.ct.batch.partitions import batch_spec, day_window, input_root, partition_name, work_dir
from include.ct.config import PipelineConfig
from include.ct.data.extract import UnreadableBatchError, batch_files, data_version_of, read_batch
from include.ct.storage import file_sha256

log = logging.getLogger(__name__)


class NoInputError(Exception):
    """Nothing to score for the day: no files in its folder, or no rows in its SQL window."""


@dataclass
class BatchInput:
    """The files one day's scoring reads, and their data version."""

    pipeline: str
    day: str
    files: list[str] = field(default_factory=list)
    data_version: str = ""
    source: str = ""
    waited_seconds: float = 0.0  # how long the run waited for it to land; 0: there at the first look

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> BatchInput:
        return cls(**payload)


def day_files(config: PipelineConfig, day: date) -> list[Path]:
    """The finished files in the day's input folder (``source: files``), partial uploads left out."""
    return batch_files(input_root(config) / partition_name(day))


def day_files_state(config: PipelineConfig, day: date) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of each of the day's files: equal at two looks, the
    day's upload has settled."""
    return tuple((path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in day_files(config, day))


def locate_input(config: PipelineConfig, day: date, engine: Any = None) -> BatchInput:
    """The day's input: its date folder (files) or its SQL window landed as Parquet (``engine``).

    Raises NoInputError when there is nothing to score.
    """
    spec = batch_spec(config)
    if spec.source.type == "sql":
        if engine is None:
            raise ValueError("a sql batch source needs a SQLAlchemy engine")
        files = land_sql_day(config, day, engine)
        where = f"{spec.source.conn_id}: rows in {partition_name(day)}"
    else:
        folder = input_root(config) / partition_name(day)
        files = day_files(config, day)
        if not files:
            raise NoInputError(f"no *.csv or *.parquet file in {folder}")
        where = str(folder)
    version = data_version_of([(path.name, file_sha256(path)) for path in files])
    log.info("%s %s: %d files, data version %s (%s)", config.name, day, len(files), version, where)
    return BatchInput(config.name, day.isoformat(), [str(path) for path in files], version, where)


def land_sql_day(config: PipelineConfig, day: date, engine: Any) -> list[Path]:
    """Run the source query for ``day`` and write its rows as Parquet files, one per chunk.

    A re-run reads the source again and replaces the files: the day is scored as the source holds
    it now. Each chunk keeps the types its rows have (a column empty in one chunk does not fix
    another's type). Raises NoInputError when the window has no rows.
    """
    import sqlalchemy

    spec = batch_spec(config)
    start, end = day_window(day)
    folder = work_dir(config, day) / "input"
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rows = 0
    try:
        with engine.connect() as connection:
            chunks = pd.read_sql(
                sqlalchemy.text(str(spec.source.query)),
                connection,
                params={"start": start, "end": end},
                chunksize=spec.chunk_rows,
            )
            for number, chunk in enumerate(chunks):
                chunk.to_parquet(partial / f"part-{number:05d}.parquet", index=False)
                rows += len(chunk)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if rows == 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise NoInputError(f"no rows from {spec.source.conn_id} in [{start}, {end})")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    log.info("%s %s: %d rows landed from %s", config.name, day, rows, spec.source.conn_id)
    return batch_files(folder)


class InputChangedError(Exception):
    """A file of the day changed after it was validated: it is not scored unchecked."""


def verify_unchanged(batch: BatchInput) -> None:
    """Raise InputChangedError unless the day's files still hash to the validated data version."""
    missing = [name for name in batch.files if not Path(name).exists()]
    if missing:
        raise InputChangedError(
            f"{batch.pipeline} {batch.day}: input files vanished after validation: {missing}"
        )
    version = data_version_of([(Path(name).name, file_sha256(Path(name))) for name in batch.files])
    if version != batch.data_version:
        raise InputChangedError(
            f"{batch.pipeline} {batch.day}: the input changed after validation (data version {version}, "
            f"validated {batch.data_version}): re-run the day to validate it again"
        )


def iter_chunks(path: Path, chunk_rows: int, key: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """``path`` (CSV or Parquet) as frames of at most ``chunk_rows`` rows; a CSV's ``key`` columns
    are read as text (an id such as ``00123`` keeps its zeros, every chunk the same type).

    Raises UnreadableBatchError naming the broken rule, as extract does for training batches.
    """
    if path.stat().st_size == 0:
        raise UnreadableBatchError("not empty", "the file is empty (0 bytes)")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            # pre_buffer reads ahead across row groups: memory then grows with the file's size
            parquet = pq.ParquetFile(path, pre_buffer=False)
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise UnreadableBatchError("readable Parquet", f"{type(exc).__name__}: {exc}") from exc
        return
    try:
        yield from pd.read_csv(
            path, encoding="utf-8", chunksize=chunk_rows, dtype=dict.fromkeys(key or [], str)
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        read_batch(path)  # names the rule (encoding, parse error, no header) as extract does
        raise
