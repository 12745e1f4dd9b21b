"""The prediction log: every served record with its prediction, model version and time.

Requests only put an entry on an in-memory queue; a background thread batches entries into
Parquet files partitioned by pipeline and day, ``<root>/<pipeline>/date=YYYY-MM-DD/*.parquet``.
Each row's ``role`` says whether its prediction was the answer a client got (``served``) or a
staged challenger's (or, under canary, the champion's) prediction scored beside it for
comparison (``shadow``). Monitoring reads it back with ``read_prediction_log``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.ct.background import BackgroundQueue, Signal

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("ct.prediction_log")


def prediction_log_dir() -> Path | None:
    """``CT_PREDICTION_LOG_DIR`` (``off`` disables it), default ``<CT_DATA_DIR>/predictions``."""
    from include.ct.storage import data_dir

    configured = os.environ.get("CT_PREDICTION_LOG_DIR", "").strip()
    if configured.lower() in ("off", "none", "false"):
        return None
    return Path(configured).resolve() if configured else data_dir() / "predictions"


@dataclass(frozen=True)
class _Entry:
    pipeline: str
    version: str
    at: datetime
    rows: Sequence[dict[str, Any]]
    ids: Sequence[str] | None
    predictions: Sequence[Any]
    probabilities: Sequence[Sequence[float]] | None
    role: str
    sample: float = 1.0


WRITER_WAKE_SECONDS = 0.1  # how often the writer takes what has queued (and sees a close)
SERVED = "served"
SHADOW = "shadow"
BATCH = "batch"  # batch scoring's dual-scoring evidence: for the online decision, not for monitoring
BATCH_PREFIX = "part-batch-"  # its files, replaced by each re-run of their day and never compacted
SAMPLE_WEIGHT = "sample_weight"  # 1/share of the records logged (monitoring.log_sample)


class _IdSource:
    """Prediction ids for records a client sent without ``ids``: a random prefix drawn once per
    process (again in a forked child) and a counter, unique across processes and restarts. A
    ``uuid4`` per record is a system call each, paid by the writer or the request path."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = uuid.uuid4().hex
        self.counter = itertools.count()

    def take(self, count: int) -> list[str]:
        prefix, counter = self.prefix, self.counter
        return [f"{prefix}-{next(counter)}" for _ in range(count)]


_ID_SOURCE = _IdSource()


def new_prediction_ids(count: int) -> list[str]:
    """``count`` fresh prediction ids, unique across processes and restarts."""
    return _ID_SOURCE.take(count)


def sampled(prediction_id: str, share: float) -> bool:
    """Whether a record is logged at ``share``: a stable hash of its id, the same in every process,
    so every version's prediction of one request is kept or dropped together."""
    return share >= 1.0 or zlib.crc32(prediction_id.encode()) < share * 2**32


class PredictionLog:
    """A bounded, non-blocking writer: the request path never waits for disk."""

    def __init__(
        self, root: Path, *, flush_seconds: float = 2.0, flush_rows: int = 20_000, capacity: int = 100_000
    ) -> None:
        self.root = root
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.written = 0
        self._entries: BackgroundQueue[_Entry] = BackgroundQueue("prediction-log", capacity)

    @property
    def dropped(self) -> int:
        """Records not logged because the writer was behind."""
        return self._entries.dropped

    def start(self) -> None:
        self._entries.start(self._run)

    def append(
        self,
        pipeline: str,
        version: str,
        at: datetime,
        rows: Sequence[dict[str, Any]],
        ids: Sequence[str] | None,
        predictions: Sequence[Any],
        probabilities: Sequence[Sequence[float]] | None,
        role: str = SERVED,
        sample: float = 1.0,
    ) -> None:
        """Queue one request's predictions (with ``sample`` < 1, only the sampled records); if the
        writer is far behind, count and drop them."""
        if sample < 1.0:
            if ids is None:
                ids = new_prediction_ids(len(rows))
            keep = [i for i, prediction_id in enumerate(ids) if sampled(prediction_id, sample)]
            if not keep:
                return
            rows = [rows[i] for i in keep]
            ids = [ids[i] for i in keep]
            predictions = [predictions[i] for i in keep]
            probabilities = [probabilities[i] for i in keep] if probabilities is not None else None
        entry = _Entry(pipeline, version, at, rows, ids, predictions, probabilities, role, sample)
        if not self._entries.offer(entry, len(rows)) and self.dropped % 1000 < len(rows):
            log.warning("prediction log is behind: %d records dropped so far", self.dropped)

    def close(self) -> None:
        """Flush what is queued and stop the writer."""
        self._entries.close()

    def _run(self) -> None:
        # The writer wakes on a timer and takes what has queued, one wake-up per look rather than
        # per request. Each entry then becomes columns on its own, small steps between which the
        # event loop gets the GIL back: converting a whole flush at once stalled requests.
        buffers: dict[tuple[str, str], dict[str, list[Any]]] = {}
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            time.sleep(max(0.0, min(WRITER_WAKE_SECONDS, deadline - time.monotonic())))
            for entry in self._entries.take_ready():
                if isinstance(entry, Signal):  # closed
                    self._flush(buffers)
                    return
                _add_columns(buffers, entry)
                rows += len(entry.rows)
            if rows >= self.flush_rows or time.monotonic() >= deadline:
                self._flush(buffers)
                buffers, rows = {}, 0
                deadline = time.monotonic() + self.flush_seconds

    def _flush(self, buffers: dict[tuple[str, str], dict[str, list[Any]]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for (pipeline, day), columns in buffers.items():
            try:
                table = pa.Table.from_pydict(columns)
                folder = self.root / pipeline / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:10]}.parquet"
                temporary = folder / f".{name}.tmp"  # readers skip dot-files: never a half file
                pq.write_table(table, temporary)
                temporary.rename(folder / name)
                self.written += table.num_rows
            except Exception:
                log.exception("could not write the prediction log of %s for %s", pipeline, day)


def _add_columns(buffers: dict[tuple[str, str], dict[str, list[Any]]], entry: _Entry) -> None:
    """Append one request's records to the column lists of its (pipeline, day)."""
    target = buffers.setdefault((entry.pipeline, entry.at.strftime("%Y-%m-%d")), {})
    count = len(entry.rows)
    ids = list(entry.ids) if entry.ids else new_prediction_ids(count)
    target.setdefault("prediction_id", []).extend(ids)
    target.setdefault("predicted_at", []).extend([entry.at] * count)
    target.setdefault("model_version", []).extend([entry.version] * count)
    target.setdefault("role", []).extend([entry.role] * count)
    target.setdefault(SAMPLE_WEIGHT, []).extend([1.0 / entry.sample] * count)
    for name in entry.rows[0]:
        target.setdefault(name, []).extend(row[name] for row in entry.rows)
    target.setdefault("prediction", []).extend(entry.predictions)
    if entry.probabilities is not None:
        # Binary: the positive class's probability; multiclass: the winning class's.
        target.setdefault("score", []).extend(p[1] if len(p) == 2 else max(p) for p in entry.probabilities)


COMPACTED_PREFIX = "compacted-"
COMPACTION_MANIFEST_PREFIX = "_compacted-"  # the commit point of a compaction (see ``compaction``)
READ_ATTEMPTS = 5


def day_files(day: Path) -> list[Path]:
    """The files a reader reads in one day folder: committed compactions, and the flushed files
    no committed compaction covers (a file listed in a manifest is read through its compaction)."""
    # Flushed files first, manifests second: a compaction committed in between is then seen
    # through its manifest, whose sources were listed and are skipped (the other order misses it).
    flushed = sorted(day.glob("part-*.parquet"))
    covered: set[str] = set()
    committed: list[Path] = []
    for manifest in sorted(day.glob(f"{COMPACTION_MANIFEST_PREFIX}*.json")):
        try:
            record = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue  # removed with its day meanwhile
        sources = set(record["sources"])
        if sources & covered:
            log.error("%s repeats files another compaction covers: ignored", manifest)
            continue
        covered |= sources
        committed.append(day / record["file"])
    return committed + [path for path in flushed if path.name not in covered]


def day_folders(pipeline: str, root: Path | None = None, since: datetime | None = None) -> list[Path]:
    """``<root>/<pipeline>/date=YYYY-MM-DD`` folders, oldest first (optionally from ``since``'s day)."""
    root = root or prediction_log_dir()
    folder = (root / pipeline) if root else None
    days = sorted(folder.glob("date=*")) if folder and folder.is_dir() else []
    if since is not None:
        first_day = since.strftime("%Y-%m-%d")
        days = [day for day in days if day.name.removeprefix("date=") >= first_day]
    return days


def read_prediction_log(
    pipeline: str, root: Path | None = None, since: datetime | None = None, *, shadow: bool = False
) -> pd.DataFrame:
    """Every logged prediction of ``pipeline`` (optionally since a time), oldest first.

    Only the answers clients got, unless ``shadow`` also asks for the predictions scored beside them
    and batch scoring's evidence.
    A compaction committed while reading makes a listed file vanish: the day is listed again.
    """
    import pandas as pd

    frames = []
    for day in day_folders(pipeline, root, since):
        for attempt in range(READ_ATTEMPTS):
            try:
                day_frames = [pd.read_parquet(path) for path in day_files(day)]
            except FileNotFoundError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                continue
            frames.extend(day_frames)
            break
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    if since is not None:
        frame = frame[frame["predicted_at"] >= pd.Timestamp(since)]
    if SAMPLE_WEIGHT not in frame.columns:  # logs written before sampling hold every record
        frame[SAMPLE_WEIGHT] = 1.0
    frame[SAMPLE_WEIGHT] = frame[SAMPLE_WEIGHT].fillna(1.0)
    if not shadow and "role" in frame.columns:  # logs written before roles hold served rows only
        frame = frame[~frame["role"].isin([SHADOW, BATCH])]
    return frame.sort_values("predicted_at", kind="stable").reset_index(drop=True)
