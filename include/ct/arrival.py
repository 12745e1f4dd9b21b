"""Data arrival: which landing-zone batches or SQL source rows are new, announced exactly once.

The landing watcher (a deferrable trigger in the triggerer) asks ``announce_new_batches`` on
every poll. A batch is announced once it has settled (unchanged for ``settle_seconds``), and is
recorded in a ledger in artifact storage, so a restarted watcher never announces it again and
each batch triggers at most one run. Batches leave the ledger when they leave the landing zone
(consumed into a snapshot, or quarantined).

A SQL source is watched the same way by ``announce_new_rows``: rows past the extraction
watermark and past the last announcement are counted, and the announced end is recorded, so a
set of rows triggers one run, which then extracts everything from the watermark on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig
from include.ct.extract import EPOCH, pending_batches, sql_watermark
from include.ct.storage import pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

LEDGER = "announced_batches.json"
SQL_ANNOUNCED = "sql_announced.json"


@dataclass(frozen=True)
class Arrival:
    """Newly settled batches of one pipeline, to be announced as one Asset event."""

    pipeline: str
    files: list[str]
    rows: int = 0
    window: tuple[str, str] | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"pipeline": self.pipeline, "files": self.files, "trigger": "data_arrival"}
        if self.window is not None:
            payload.update(rows=self.rows, window=list(self.window))
        return payload | {"reason": self.reason}

    @property
    def reason(self) -> str:
        if self.window is not None:
            return f"new data: {self.rows} new rows in {self.window[0]} .. {self.window[1]}"
        more = f" and {len(self.files) - 5} more" if len(self.files) > 5 else ""
        return f"new data: {', '.join(self.files[:5])}{more}"


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _ledger_path(config: PipelineConfig) -> Path:
    return pipeline_paths(config).artifacts / LEDGER


def read_ledger(config: PipelineConfig) -> dict[str, str]:
    """File name -> fingerprint of every batch already announced and still in the landing zone."""
    path = _ledger_path(config)
    if not path.exists():
        return {}
    try:
        ledger: dict[str, str] = json.loads(path.read_text())
    except ValueError:
        log.warning("arrival ledger %s is unreadable: starting a new one", path)
        return {}
    return ledger


def announce_new_batches(
    config: PipelineConfig, *, settle_seconds: float = 2.0, now: float | None = None
) -> Arrival | None:
    """Settled batches not announced before (recorded now), or None if there are none.

    A file rewritten in place (new size or mtime) counts as new again.
    """
    now = time.time() if now is None else now
    ledger = read_ledger(config)
    present: dict[str, str] = {}
    fresh: list[str] = []
    for path in pending_batches(config):
        try:
            fingerprint = _fingerprint(path)
            settled = now - path.stat().st_mtime >= settle_seconds
        except FileNotFoundError:  # consumed while we looked
            continue
        if ledger.get(path.name) == fingerprint:
            present[path.name] = fingerprint
        elif settled:
            present[path.name] = fingerprint
            fresh.append(path.name)
    if present != ledger:  # forget what left the landing zone, remember what is announced now
        write_json_atomic(_ledger_path(config), present)
    if not fresh:
        return None
    log.info("%s: %d new batch(es): %s", config.name, len(fresh), fresh)
    return Arrival(config.name, fresh)


def _announced_path(config: PipelineConfig) -> Path:
    return pipeline_paths(config).artifacts / SQL_ANNOUNCED


def announce_new_rows(config: PipelineConfig, engine: Any, *, now: datetime | None = None) -> Arrival | None:
    """Rows of the SQL source not yet extracted nor announced (recorded now), or None.

    Counts the source query over ``[since, now)``, where ``since`` is the later of the
    extraction watermark and the last announcement; rows stamped before it that arrive late
    are not seen, so the query should filter on when a row was written.
    """
    import sqlalchemy

    now = datetime.now(UTC) if now is None else now
    marks = [sql_watermark(config)]
    announced = _announced_path(config)
    if announced.exists():
        try:
            marks.append(datetime.fromisoformat(json.loads(announced.read_text())["end"]))
        except (ValueError, KeyError):
            log.warning("SQL announcement record %s is unreadable: ignoring it", announced)
    source_query = str(config.source.query).strip().rstrip(";")
    since = max((mark for mark in marks if mark is not None), default=EPOCH)
    if since >= now:
        return None
    count_query = sqlalchemy.text(f"SELECT count(*) FROM ({source_query}) AS new_rows")
    with engine.connect() as connection:
        rows = int(connection.execute(count_query, {"start": since, "end": now}).scalar_one())
    if rows == 0:
        return None
    write_json_atomic(announced, {"end": now.isoformat(), "rows": rows})
    log.info("%s: %d new rows in %s .. %s", config.name, rows, since, now)
    return Arrival(config.name, [], rows=rows, window=(since.isoformat(), now.isoformat()))
