"""One thing housekeeping removes, with why; measured before, logged when removed."""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ct.housekeeping")


@dataclass
class Removal:
    """A file, folder or registry entry that goes, and the rule that says so."""

    kind: str
    target: str
    reason: str
    bytes: int = 0
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measured(kind: str, path: Path, reason: str) -> Removal:
    """A removal of ``path`` with its size and file count."""
    if path.is_file():
        return Removal(kind, str(path), reason, path.stat().st_size, 1)
    sizes = [item.stat().st_size for item in path.rglob("*") if item.is_file()]
    return Removal(kind, str(path), reason, sum(sizes), len(sizes))


def remove_path(removal: Removal) -> None:
    """Delete the removal's file or folder and log what and why."""
    path = Path(removal.target)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    log.info(
        "removed %s %s (%d files, %d bytes): %s",
        removal.kind,
        path,
        removal.files,
        removal.bytes,
        removal.reason,
    )
