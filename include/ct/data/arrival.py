"""Data arrival: which landing-zone batches or SQL source rows are new, announced exactly once.

The landing watcher (a deferrable trigger in the triggerer) runs ``watch_landing``: it asks
``announce_new_batches`` as soon as the file system reports a change in the landing zone (inotify
and its kin, through watchfiles), and every ``poll_seconds`` in any case, for file systems that
report nothing (NFS, some container mounts). A batch is announced once it has settled (unchanged
for ``settle_seconds``), and is recorded in a ledger in artifact storage, so a restarted watcher
never announces it again and each batch triggers at most one run. Batches leave the ledger when
they leave the landing zone (consumed into a snapshot, or quarantined).

A SQL source is watched the same way by ``announce_new_rows``: rows past the extraction
watermark and past the last announcement are counted, and the announced end is recorded, so a
set of rows triggers one run, which then extracts everything from the watermark on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.extract import EPOCH, pending_batches, sql_watermark
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


async def watch_landing(
    pipeline: str, *, poll_seconds: float, settle_seconds: float
) -> AsyncGenerator[Arrival, None]:
    """Each set of newly settled batches of ``pipeline``, moments after it lands.

    Looks when the landing zone changes and every ``poll_seconds`` at the latest; after a change
    it waits ``settle_seconds`` first, the time a file must stay unchanged to count as complete.
    A broken config or full disk is logged and retried, never ends the watch.
    """
    wakeups: AsyncGenerator[bool, None] | None = None
    first_wakeup: asyncio.Future[bool] | None = None
    try:
        while True:
            arrival = None
            try:
                config = await asyncio.to_thread(find_pipeline_config, pipeline)
                if wakeups is None:
                    wakeups = landing_wakeups(pipeline_paths(config).landing, poll_seconds)
                    first_wakeup = asyncio.ensure_future(anext(wakeups))
                    await asyncio.sleep(0)  # the watcher is armed before the first look: nothing slips by
                arrival = await asyncio.to_thread(announce_new_batches, config, settle_seconds=settle_seconds)
            except Exception:
                log.exception("landing watcher of %s failed; retrying", pipeline)
            if arrival is not None:
                yield arrival
            if wakeups is None:
                await asyncio.sleep(poll_seconds)
                continue
            if first_wakeup is not None:
                changed, first_wakeup = await first_wakeup, None
            else:
                changed = await anext(wakeups)
            if changed and settle_seconds > 0:
                await asyncio.sleep(settle_seconds)
    finally:
        if first_wakeup is not None and first_wakeup.cancel():
            with contextlib.suppress(asyncio.CancelledError):
                await first_wakeup
        if wakeups is not None:
            await wakeups.aclose()


def _is_batch_name(path: str) -> bool:
    return not Path(path).name.startswith((".", "_"))  # partial uploads, never read


async def landing_wakeups(landing: Path, poll_seconds: float) -> AsyncGenerator[bool, None]:
    """Yield True when a file in ``landing`` changes, False after ``poll_seconds`` without one.

    File system events come from watchfiles in one worker thread. Where they cannot be had (the
    folder cannot be created, the inotify watch limit is reached) the wait falls back to polling,
    and watching is tried again on every poll.
    """
    from watchfiles import awatch

    warned = False
    while True:
        try:
            landing.mkdir(parents=True, exist_ok=True)
            changes = awatch(
                landing,
                watch_filter=lambda _change, path: _is_batch_name(path),
                debounce=1_000,  # a long upload in place wakes the watcher at most once a second
                step=50,
                rust_timeout=max(1, round(poll_seconds * 1000)),
                yield_on_timeout=True,
                recursive=False,
            )
            async with contextlib.aclosing(changes):
                async for changed in changes:
                    yield bool(changed)
        except Exception:  # e.g. OSError, or watchfiles' own RuntimeError
            level = logging.DEBUG if warned else logging.WARNING  # say it once, not every poll
            log.log(
                level,
                "cannot watch %s for new files: polling every %s s",
                landing,
                poll_seconds,
                exc_info=True,
            )
            warned = True
            await asyncio.sleep(poll_seconds)
            yield False


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
