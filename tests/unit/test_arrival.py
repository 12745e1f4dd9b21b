"""Data arrival: each settled batch is announced exactly once, across watcher restarts."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from include.ct import datagen
from include.ct.arrival import announce_new_batches, read_ledger
from include.ct.config import PipelineConfig
from include.ct.storage import pipeline_paths


def test_a_batch_is_announced_once_and_forgotten_when_consumed(churn: PipelineConfig) -> None:
    assert announce_new_batches(churn, settle_seconds=0) is None
    first = datagen.write_batch(churn, rows=50)
    arrival = announce_new_batches(churn, settle_seconds=0)
    assert arrival is not None and arrival.files == [first.name]
    assert arrival.to_payload()["trigger"] == "data_arrival"
    assert announce_new_batches(churn, settle_seconds=0) is None  # a restarted watcher too
    second = datagen.write_batch(churn, rows=50)
    assert announce_new_batches(churn, settle_seconds=0).files == [second.name]  # type: ignore[union-attr]
    first.unlink()  # consumed
    assert announce_new_batches(churn, settle_seconds=0) is None
    assert set(read_ledger(churn)) == {second.name}


def test_a_file_still_being_written_waits_until_it_settles(churn: PipelineConfig) -> None:
    landing = pipeline_paths(churn).landing
    landing.mkdir(parents=True)
    upload = landing / "day_0009.csv"
    upload.write_text("tenure_months\n1\n")
    assert announce_new_batches(churn, settle_seconds=30) is None
    old = time.time() - 60
    os.utime(upload, (old, old))
    assert announce_new_batches(churn, settle_seconds=30).files == ["day_0009.csv"]  # type: ignore[union-attr]
    upload.write_text("tenure_months\n1\n2\n")  # rewritten in place: new content, new announcement
    assert announce_new_batches(churn, settle_seconds=0).files == ["day_0009.csv"]  # type: ignore[union-attr]


def test_trigger_kind_and_reason_of_each_kind_of_run() -> None:
    from datetime import UTC, datetime

    from ct_airflow.operators import trigger_of

    def context(run_type: str, conf: dict[str, object] | None = None, **extra: object) -> dict[str, object]:
        when = datetime(2026, 11, 25, tzinfo=UTC)
        run = SimpleNamespace(run_type=run_type, conf=conf or {}, run_after=when, logical_date=when)
        return {"dag_run": run, "params": {}, **extra}

    event = SimpleNamespace(extra={"from_trigger": True, "payload": {"files": ["day_0002.csv"]}})
    cases = {
        "asset": (context("asset_triggered", triggering_asset_events={"a": [event]}), "data_arrival"),
        "drift": (context("manual", {"trigger": "drift", "reason": "PSI plan 0.4"}), "drift"),
        "schedule": (context("scheduled"), "schedule"),
        "hand": (context("manual", {"reason": "new features"}), "manual"),
    }
    answers = {name: trigger_of(ctx) for name, (ctx, _) in cases.items()}  # type: ignore[arg-type]
    assert {name: kind for name, (kind, _) in answers.items()} == {n: k for n, (_, k) in cases.items()}
    assert answers["asset"][1] == "new data: day_0002.csv"
    assert answers["drift"][1] == "PSI plan 0.4"
    assert answers["schedule"][1].startswith("scheduled run (2026-11-25")
    assert answers["hand"][1] == "new features"
