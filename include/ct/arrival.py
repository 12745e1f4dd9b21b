"""Data arrival: which landing-zone batches are new, announced exactly once.

The landing watcher (a deferrable trigger in the triggerer) asks ``announce_new_batches`` on
every poll. A batch is announced once it has settled (unchanged for ``settle_seconds``), and is
recorded in a ledger in artifact storage, so a restarted watcher never announces it again and
each batch triggers at most one run. Batches leave the ledger when they leave the landing zone
(consumed into a snapshot, or quarantined).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig
from include.ct.extract import pending_batches
from include.ct.storage import pipeline_paths, write_json_atomic

log = logging.getLogger(__name__)

LEDGER = "announced_batches.json"


@dataclass(frozen=True)
class Arrival:
    """Newly settled batches of one pipeline, to be announced as one Asset event."""

    pipeline: str
    files: list[str]

    def to_payload(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "files": self.files, "trigger": "data_arrival"}

    @property
    def reason(self) -> str:
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
