"""Housekeeping without MLflow: prediction-log compaction under a live writer, retention rules."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.ct.config import PipelineConfig
from include.ct.housekeeping import files
from include.ct.housekeeping.protected import Protected
from include.ct.monitoring.compaction import compact_day
from include.ct.monitoring.prediction_log import PredictionLog, day_files, read_prediction_log
from include.ct.storage import pipeline_paths, write_json_atomic

NOW = datetime.now(UTC)


def _records(count: int) -> list[dict[str, object]]:
    return [{"tenure_months": i, "plan": "basic"} for i in range(count)]


def _write(log: PredictionLog, tag: str, count: int) -> list[str]:
    ids = [f"{tag}-{i}" for i in range(count)]
    log.append("churn", "1", datetime.now(UTC), _records(count), ids, [0] * count, [[0.5, 0.5]] * count)
    return ids


def test_compaction_while_the_service_writes_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "log"
    old = PredictionLog(root, flush_seconds=0.01)
    old.start()
    old_ids: list[str] = []
    for batch in range(40):  # 40 flushes: many small files, as the service leaves them
        old_ids += _write(old, f"old{batch}", 25)
        time.sleep(0.02)
    old.close()
    (day,) = sorted((root / "churn").iterdir())
    three_hours_ago = (NOW - timedelta(hours=3)).timestamp()
    for path in day.glob("part-*.parquet"):
        os.utime(path, (three_hours_ago, three_hours_ago))
    before = len(list(day.glob("part-*.parquet")))
    assert before > 5

    live = PredictionLog(root, flush_seconds=0.01)  # the service keeps writing meanwhile
    live.start()
    stop = threading.Event()
    written: list[str] = []
    problems: list[str] = []

    def serve() -> None:
        batch = 0
        while not stop.is_set():
            written.extend(_write(live, f"new{batch}", 10))
            batch += 1
            time.sleep(0.005)

    def read() -> None:
        while not stop.is_set():
            ids = read_prediction_log("churn", root)["prediction_id"]
            seen = ids[ids.str.startswith("old")]
            if len(seen) != len(old_ids) or seen.duplicated().any():
                problems.append(f"read {len(seen)} old rows, {int(seen.duplicated().sum())} twice")

    threads = [threading.Thread(target=serve), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    done = compact_day(day, closed_before=NOW - timedelta(hours=2))
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    live.close()

    assert problems == []
    assert len(done) == 1 and done[0].files == before and done[0].rows == len(old_ids)
    final = read_prediction_log("churn", root)["prediction_id"]
    assert sorted(final) == sorted(old_ids + written) and not final.duplicated().any()
    compacted = [path.name for path in day_files(day) if path.name.startswith("compacted-")]
    assert len(compacted) == 1  # one file for the hour
    assert compact_day(day, closed_before=NOW - timedelta(hours=2)) == []  # idempotent


def test_a_compaction_that_stopped_after_its_commit_is_finished_next_time(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, flush_seconds=0.01)
    log.start()
    ids = []
    for batch in range(3):
        ids += _write(log, f"b{batch}", 5)
        time.sleep(0.05)
    log.close()
    (day,) = sorted((root / "churn").iterdir())
    sources = sorted(day.glob("part-*.parquet"))
    stamp = (NOW - timedelta(hours=5)).timestamp()
    for path in sources:
        os.utime(path, (stamp, stamp))
    # committed (manifest written) but the sources were not removed: readers already skip them
    (day / "compacted-00-x.parquet").write_bytes(sources[0].read_bytes())
    write_json_atomic(
        day / "_compacted-00-x.json", {"file": "compacted-00-x.parquet", "sources": [sources[0].name]}
    )
    assert sorted(read_prediction_log("churn", root)["prediction_id"]) == sorted(ids)
    compact_day(day, closed_before=NOW - timedelta(hours=2))
    assert not sources[0].exists()
    assert sorted(read_prediction_log("churn", root)["prediction_id"]) == sorted(ids)


def test_a_log_horizon_within_the_label_window_is_refused(churn: PipelineConfig) -> None:
    with pytest.raises(ValueError, match=r"retention\.prediction_log_days"):
        PipelineConfig.model_validate(
            {**churn.model_dump(), "retention": {"prediction_log_days": 5}}
        )  # the monitor joins labels on 7 days of predictions
    with pytest.raises(ValueError, match=r"retention\.snapshots_keep.*fewer than the training window"):
        PipelineConfig.model_validate({**churn.model_dump(), "retention": {"snapshots_keep": 10}})


def _accept(config: PipelineConfig, versions: list[str]) -> None:
    paths = pipeline_paths(config)
    for index, version in enumerate(versions):
        (paths.snapshots / version).mkdir(parents=True)
        (paths.snapshots / version / "manifest.json").write_text("{}")
        (paths.archive / version).mkdir(parents=True)
        (paths.archive / version / "day.csv").write_text("a,b\n1,2\n")
        write_json_atomic(
            paths.accepted / f"{version}.json",
            {"data_version": version, "accepted_at": f"2026-01-{index + 1:02d}"},
        )


def test_snapshots_beyond_the_window_go_unless_a_kept_model_was_trained_on_them(
    churn: PipelineConfig,
) -> None:
    config = churn.model_copy(update={"training": churn.training.model_copy(update={"window": 3})})
    versions = [f"v{i}" for i in range(6)]
    _accept(config, versions)
    protected = Protected(versions={"4": "the champion"}, snapshots={"v1"})

    removals = files.prunable_snapshots(config, protected, NOW)

    gone = {Path(r.target).name for r in removals if r.kind == "snapshot"}
    assert gone == {"v0", "v2"}  # v1 is in the champion's lineage; v3-v5 are the training window
    assert {r.kind for r in removals} == {"snapshot", "archived_batch", "acceptance"}
    assert all("training window" in r.reason for r in removals)
    unwindowed = churn.model_copy(update={"training": churn.training.model_copy(update={"window": None})})
    assert files.prunable_snapshots(unwindowed, Protected(), NOW) == []  # every snapshot is trained on


def test_old_reports_quarantine_and_log_days_expire_and_protected_splits_stay(churn: PipelineConfig) -> None:
    paths = pipeline_paths(churn)
    old = (NOW - timedelta(days=120)).timestamp()
    for folder in (paths.reports / "a", paths.reports / "b", paths.splits / "kept", paths.splits / "gone"):
        folder.mkdir(parents=True)
        (folder / "x").write_text("x")
    paths.quarantine.mkdir(parents=True)
    (paths.quarantine / "bad.csv").write_text("x")
    for path in (
        paths.reports / "a",
        paths.splits / "kept",
        paths.splits / "gone",
        paths.quarantine / "bad.csv",
    ):
        os.utime(path, (old, old))
    log_root = Path(os.environ["CT_DATA_DIR"]) / "predictions" / "churn"
    for day in (NOW - timedelta(days=40), NOW - timedelta(days=29)):
        (log_root / f"date={day:%Y-%m-%d}").mkdir(parents=True)

    reports = files.expired_reports(churn, Protected(training_data_versions={"kept"}), NOW)
    assert {(r.kind, Path(r.target).name) for r in reports} == {("report", "a"), ("split", "gone")}
    assert [Path(r.target).name for r in files.expired_quarantine(churn, NOW)] == ["bad.csv"]
    labels = Path(os.environ["CT_DATA_DIR"]) / "labels" / "churn"
    labels.mkdir(parents=True)
    for name, age in (("old.csv", 45), ("recent.csv", 3)):
        (labels / name).write_text("prediction_id,churned\n")
        stamp = (NOW - timedelta(days=age)).timestamp()
        os.utime(labels / name, (stamp, stamp))
    assert [Path(r.target).name for r in files.expired_labels(churn, NOW)] == ["old.csv"]
    (expired,) = files.expired_log_days(churn, NOW)
    assert expired.target.endswith(f"date={NOW - timedelta(days=40):%Y-%m-%d}")
    assert "30 days" in expired.reason


def test_a_manifest_that_repeats_another_compactions_files_is_ignored(tmp_path: Path) -> None:
    day = tmp_path / "churn" / "date=2026-12-01"
    day.mkdir(parents=True)
    import pandas as pd

    pd.DataFrame({"prediction_id": ["a"], "predicted_at": [NOW]}).to_parquet(day / "compacted-01-x.parquet")
    pd.DataFrame({"prediction_id": ["a"], "predicted_at": [NOW]}).to_parquet(day / "compacted-01-y.parquet")
    write_json_atomic(
        day / "_compacted-01-x.json", {"file": "compacted-01-x.parquet", "sources": ["part-1.parquet"]}
    )
    write_json_atomic(
        day / "_compacted-01-y.json", {"file": "compacted-01-y.parquet", "sources": ["part-1.parquet"]}
    )
    assert [path.name for path in day_files(day)] == ["compacted-01-x.parquet"]
    assert list(read_prediction_log("churn", tmp_path)["prediction_id"]) == ["a"]
