"""Where a pipeline's data lives: landing zone, quarantine, archive and artifact storage.

All locations derive from ``CT_DATA_DIR`` (default ``./data``) so one variable moves everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.ct.config import PipelineConfig


def data_dir() -> Path:
    """Root of all pipeline data (``CT_DATA_DIR``)."""
    return Path(os.environ.get("CT_DATA_DIR", "data")).resolve()


@dataclass(frozen=True)
class PipelinePaths:
    """The folders one pipeline reads and writes."""

    landing: Path
    quarantine: Path
    archive: Path
    artifacts: Path

    @property
    def snapshots(self) -> Path:
        return self.artifacts / "snapshots"

    @property
    def accepted(self) -> Path:
        return self.artifacts / "accepted"

    @property
    def reports(self) -> Path:
        return self.artifacts / "validation"

    @property
    def splits(self) -> Path:
        return self.artifacts / "splits"


def pipeline_paths(config: PipelineConfig) -> PipelinePaths:
    """Resolve the folders of ``config`` under the current ``CT_DATA_DIR``."""
    root = data_dir()
    artifacts_root = Path(os.environ.get("CT_ARTIFACTS_DIR", root / "artifacts"))
    return PipelinePaths(
        landing=root / config.landing_path,
        quarantine=root / "quarantine" / config.name,
        archive=root / "archive" / config.name,
        artifacts=artifacts_root / config.name,
    )


def file_sha256(path: Path) -> str:
    """Content hash of a file, streamed so large batches need no memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        tmp = Path(handle.name)
    os.replace(tmp, path)


def move_file(source: Path, destination_dir: Path) -> Path:
    """Move ``source`` into ``destination_dir``; a second call after success is a no-op."""
    destination_dir.mkdir(parents=True, exist_ok=True)
    target = destination_dir / source.name
    if source.exists():
        shutil.move(str(source), target)
    return target
