"""Fault and abuse suite: fixtures, and the report of what it survived.

Every scenario records what it tried and how it ended through the ``reliability`` fixture;
when the whole suite ran (not a selection) and ``CT_RELIABILITY_REPORT`` names a file (``make
reliability`` names bench/reliability.md), the session writes the report there. A plain test
run writes nothing outside its temporary folders.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.ct.config import BUNDLED_PIPELINES_DIR, PipelineConfig, load_pipeline_config
from testbed.services import REPO_ROOT

REPORT_ENV = "CT_RELIABILITY_REPORT"  # where to write the report; unset: no report
COUNTING = "CT_RELIABILITY_COUNTING"  # set in the collect-only child: it must not count again


@dataclass
class Outcome:
    area: str
    scenario: str
    survived: bool
    detail: str
    inputs: int = 1
    data_lost: int = 0


@dataclass
class Ledger:
    outcomes: list[Outcome] = field(default_factory=list)

    def record(self, area: str, scenario: str, detail: str, *, inputs: int = 1, data_lost: int = 0) -> None:
        """Called by a scenario after its assertions passed: it survived."""
        self.outcomes.append(Outcome(area, scenario, data_lost == 0, detail, inputs, data_lost))


LEDGER = Ledger()


@pytest.fixture
def reliability() -> Ledger:
    return LEDGER


@pytest.fixture
def hardened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineConfig]:
    """The churn pipeline with a row id and a float feature bounded on one side only."""
    monkeypatch.setenv("CT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CT_ARTIFACTS_DIR", raising=False)
    config = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    features = dict(config.features)
    features["monthly_fee"] = features["monthly_fee"].model_copy(update={"max": None})
    yield config.model_copy(update={"id_column": "customer_id", "features": features})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the report to ``CT_RELIABILITY_REPORT`` when every reliability scenario ran and passed."""
    report = os.environ.get(REPORT_ENV)
    if not report or not LEDGER.outcomes or exitstatus != 0 or os.environ.get(COUNTING):
        return
    selected = [item for item in session.items if "tests/reliability/" in str(item.path)]
    if len(selected) != _collectable_count():
        return  # a selection, not the whole suite
    rows = "\n".join(
        f"| {o.area} | {o.scenario} | {'yes' if o.survived else 'NO'} | {o.inputs} | {o.data_lost} "
        f"| {o.detail} |"
        for o in LEDGER.outcomes
    )
    Path(report).write_text(
        f"""# Reliability and abuse suite

Written by `tests/reliability/` from its own results (`make reliability` runs the suite and
rewrites this file when the whole suite passes). Machine: {platform.machine()}, Python
{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}.

| figure | value |
|---|---|
| scenarios run | {len(LEDGER.outcomes)} |
| faults and abuses survived | {sum(o.survived for o in LEDGER.outcomes)} |
| inputs tried | {sum(o.inputs for o in LEDGER.outcomes)} |
| data lost | {sum(o.data_lost for o in LEDGER.outcomes)} |

| area | scenario | survived | inputs | data lost | how it ended |
|---|---|---|---|---|---|
{rows}
"""
    )


def _collectable_count() -> int:
    """How many tests tests/reliability/ holds (to tell a full run from a selection)."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    return sum(1 for line in done.stdout.splitlines() if "::" in line)
