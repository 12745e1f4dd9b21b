"""A process SIGKILLed while it writes a snapshot leaves nothing a later step could read as data:
the half-written staging folder is never accepted, the landing zone keeps every batch, and the
next extract writes the whole snapshot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from include.ct.config import BUNDLED_PIPELINES_DIR, load_pipeline_config
from include.ct.data.extract import accepted_versions, extract, load_training_data
from include.ct.data.inventory import batch_inventory
from include.ct.data.validate import validate_snapshot
from include.ct.storage import pipeline_paths
from testbed.services import REPO_ROOT
from tests.reliability.conftest import Ledger
from tools import datagen

# Extract in a child process whose second Parquet part dies half-written, by a real SIGKILL.
KILLED_EXTRACT = """
import os, signal
import pandas as pd
from include.ct.config import BUNDLED_PIPELINES_DIR, load_pipeline_config
from include.ct.data.extract import extract

write = pd.DataFrame.to_parquet
calls = []

def dies_on_the_second_part(frame, path, *args, **kwargs):
    calls.append(path)
    write(frame, path, *args, **kwargs)
    if len(calls) == 2:
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

pd.DataFrame.to_parquet = dies_on_the_second_part
extract(load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml"))
"""


def test_extract_killed_mid_snapshot_leaves_nothing_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: Ledger
) -> None:
    monkeypatch.setenv("CT_DATA_DIR", str(tmp_path / "data"))
    config = load_pipeline_config(BUNDLED_PIPELINES_DIR / "churn.yaml")
    landed = [datagen.write_batch(config, rows=500) for _ in range(3)]

    child = subprocess.run(
        [sys.executable, "-c", KILLED_EXTRACT],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]

    paths = pipeline_paths(config)
    leftovers = [p.name for p in paths.snapshots.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].endswith(".staging"), leftovers  # only the staging folder
    assert accepted_versions(config) == []
    with pytest.raises(Exception, match="no accepted data"):
        load_training_data(config)  # nothing half-written can be trained on
    assert all(path.exists() for path in landed)  # nothing consumed
    assert len(batch_inventory(config).pending) == 3

    snapshot = extract(config)  # the retry
    assert [p.name for p in paths.snapshots.iterdir()] == [snapshot.data_version]
    assert snapshot.rows == 1500
    validate_snapshot(config, snapshot)
    frame, _, _ = load_training_data(config)
    assert len(frame) == 1500
    inventory = batch_inventory(config)
    assert inventory.unaccounted([path.name for path in landed]) == []
    reliability.record(
        "fault",
        "extract SIGKILLed with a snapshot half-written",
        "staging folder never accepted or read; the retry wrote all 1500 rows; 3 of 3 batches accounted for",
        inputs=3,
    )
