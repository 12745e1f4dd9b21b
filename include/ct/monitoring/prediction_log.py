"""The prediction log: every served record with its prediction, model version and time.

Requests only put an entry on an in-memory queue; a background thread batches entries into
Parquet files partitioned by pipeline and day, ``<root>/<pipeline>/date=YYYY-MM-DD/*.parquet``.
Each row's ``role`` says whether its prediction was the answer a client got (``served``) or a
staged challenger's (or, under canary, the champion's) prediction scored beside it for
comparison (``shadow``). Monitoring reads it back with ``read_prediction_log``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


SERVED = "served"
SHADOW = "shadow"


class PredictionLog:
    """A bounded, non-blocking writer: the request path never waits for disk."""

    def __init__(
        self, root: Path, *, flush_seconds: float = 2.0, flush_rows: int = 20_000, capacity: int = 100_000
    ) -> None:
        self.root = root
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[_Entry | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

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
    ) -> None:
        """Queue one request's predictions; if the writer is far behind, count and drop it."""
        try:
            self._queue.put_nowait(_Entry(pipeline, version, at, rows, ids, predictions, probabilities, role))
        except queue.Full:
            self.dropped += len(rows)
            if self.dropped % 1000 < len(rows):
                log.warning("prediction log is behind: %d records dropped so far", self.dropped)

    def close(self) -> None:
        """Flush what is queued and stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=60)
        self._thread = None

    def _run(self) -> None:
        # Each entry becomes columns as soon as it is dequeued: small steps between which the
        # event loop gets the GIL back. Converting a whole flush at once stalled requests.
        buffers: dict[tuple[str, str], dict[str, list[Any]]] = {}
        rows = 0
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                entry = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                entry = _TIMEOUT
            if entry is None:
                self._flush(buffers)
                return
            if entry is not _TIMEOUT:
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


_TIMEOUT: Any = object()


def _add_columns(buffers: dict[tuple[str, str], dict[str, list[Any]]], entry: _Entry) -> None:
    """Append one request's records to the column lists of its (pipeline, day)."""
    target = buffers.setdefault((entry.pipeline, entry.at.strftime("%Y-%m-%d")), {})
    count = len(entry.rows)
    ids = list(entry.ids) if entry.ids else [f"{uuid.uuid4().hex}-{i}" for i in range(count)]
    target.setdefault("prediction_id", []).extend(ids)
    target.setdefault("predicted_at", []).extend([entry.at] * count)
    target.setdefault("model_version", []).extend([entry.version] * count)
    target.setdefault("role", []).extend([entry.role] * count)
    for name in entry.rows[0]:
        target.setdefault(name, []).extend(row[name] for row in entry.rows)
    target.setdefault("prediction", []).extend(entry.predictions)
    if entry.probabilities is not None:
        # Binary: the positive class's probability; multiclass: the winning class's.
        target.setdefault("score", []).extend(p[1] if len(p) == 2 else max(p) for p in entry.probabilities)


def read_prediction_log(
    pipeline: str, root: Path | None = None, since: datetime | None = None, *, shadow: bool = False
) -> pd.DataFrame:
    """Every logged prediction of ``pipeline`` (optionally since a time), oldest first.

    Only the answers clients got, unless ``shadow`` also asks for the predictions scored beside them.
    """
    import pandas as pd

    root = root or prediction_log_dir()
    folder = (root / pipeline) if root else None
    files = sorted(folder.glob("date=*/part-*.parquet")) if folder and folder.exists() else []
    if since is not None:
        first_day = since.strftime("%Y-%m-%d")
        files = [f for f in files if f.parent.name.removeprefix("date=") >= first_day]
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None:
        frame = frame[frame["predicted_at"] >= pd.Timestamp(since)]
    if not shadow and "role" in frame.columns:  # logs written before roles hold served rows only
        frame = frame[frame["role"] != SHADOW]
    return frame.sort_values("predicted_at", kind="stable").reset_index(drop=True)
