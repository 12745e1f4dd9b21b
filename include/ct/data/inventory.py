"""Where every batch that arrived is now: pending, accepted into a snapshot, or quarantined.

The no-data-lost check: a batch file leaves the landing zone only into the archive of an
accepted snapshot or into quarantine beside its report, so every file that ever arrived is
accounted for here, and anything else (an archived file no snapshot accepted, a quarantined
file without its report, a half-written file left in the landing zone) is a problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from include.ct.config import PipelineConfig
from include.ct.data.extract import pending_batches
from include.ct.storage import pipeline_paths

REPORT_SUFFIX = ".report.json"


@dataclass
class Inventory:
    """Every batch file of one pipeline, by where it is."""

    pending: list[str] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # file -> data version
    quarantined: dict[str, Path] = field(default_factory=dict)  # file -> its report
    problems: list[str] = field(default_factory=list)

    def unaccounted(self, arrived: list[str]) -> list[str]:
        """Files from ``arrived`` that are in none of the three places (lost)."""
        known = {*self.pending, *self.accepted, *self.quarantined}
        quarantined_stems = {Path(name).stem.split("__")[0] for name in self.quarantined}
        return [name for name in arrived if name not in known and Path(name).stem not in quarantined_stems]


def batch_inventory(config: PipelineConfig) -> Inventory:
    """Scan landing zone, archive, accepted markers and quarantine of ``config``."""
    paths = pipeline_paths(config)
    inventory = Inventory(pending=[path.name for path in pending_batches(config)])
    if paths.landing.is_dir():
        inventory.problems += [
            f"half-written file in the landing zone: {path.name}"
            for path in paths.landing.iterdir()
            if path.is_file() and path.name.startswith(".") and path.name.endswith(".tmp")
        ]
    accepted_files: dict[str, set[str]] = {}
    for marker in sorted(paths.accepted.glob("*.json")) if paths.accepted.is_dir() else []:
        accepted_files[marker.stem] = set(json.loads(marker.read_text()).get("batches", []))
    if paths.archive.is_dir():
        for version_dir in sorted(p for p in paths.archive.iterdir() if p.is_dir()):
            for path in sorted(version_dir.iterdir()):
                if path.name in accepted_files.get(version_dir.name, set()):
                    inventory.accepted[path.name] = version_dir.name
                else:
                    inventory.problems.append(
                        f"archived without an accepted snapshot: {version_dir.name}/{path.name}"
                    )
    if paths.quarantine.is_dir():
        for path in sorted(paths.quarantine.iterdir()):
            if not path.is_file() or path.name.endswith((REPORT_SUFFIX, ".report.html")):
                continue
            report = paths.quarantine / f"{path.name}{REPORT_SUFFIX}"
            if report.exists():
                inventory.quarantined[path.name] = report
            else:
                inventory.problems.append(f"quarantined without a report: {path.name}")
    return inventory
