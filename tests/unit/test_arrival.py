"""Data arrival: each settled batch is announced exactly once, across watcher restarts."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.data.arrival import announce_new_batches, announce_new_rows, read_ledger
from include.ct.storage import pipeline_paths
from tools import datagen

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)


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
    from ct_airflow.operators import trigger_of
    from ct_airflow.run_notes import MANUAL_REASON

    def context(run_type: str, conf: dict[str, object] | None = None, **extra: object) -> dict[str, object]:
        when = datetime(2026, 11, 25, tzinfo=UTC)
        run = SimpleNamespace(run_type=run_type, conf=conf or {}, run_after=when, logical_date=when)
        return {"dag_run": run, "params": {"reason": MANUAL_REASON}, **extra}  # the form's default

    event = SimpleNamespace(extra={"from_trigger": True, "payload": {"files": ["day_0002.csv"]}})
    cases = {
        "asset": (context("asset_triggered", triggering_asset_events={"a": [event]}), "data_arrival"),
        "drift": (context("manual", {"trigger": "drift", "reason": "PSI plan 0.4"}), "drift"),
        "schedule": (context("scheduled"), "schedule"),
        "hand": (context("manual", {"reason": "new features"}), "manual"),
        "api": (context("manual"), "manual"),  # triggered with no conf: the form's default reason
    }
    answers = {name: trigger_of(ctx) for name, (ctx, _) in cases.items()}  # type: ignore[arg-type]
    assert {name: kind for name, (kind, _) in answers.items()} == {n: k for n, (_, k) in cases.items()}
    assert answers["asset"][1] == "new data: day_0002.csv"
    assert answers["drift"][1] == "PSI plan 0.4"
    assert answers["schedule"][1].startswith("scheduled run (2026-11-25")
    assert answers["hand"][1] == "new features"
    assert answers["api"][1] == MANUAL_REASON


def test_new_sql_rows_are_announced_once_and_extracted_incrementally(
    churn: PipelineConfig, tmp_path: Path
) -> None:
    """The SQL watcher announces rows past the watermark once; the run then extracts them all."""
    import sqlalchemy

    from include.ct.data.extract import land_sql_window, sql_window

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    query = "SELECT * FROM events WHERE event_time >= :start AND event_time < :end"
    sql = churn.model_copy(
        update={"source": churn.source.model_copy(update={"type": "sql", "conn_id": "db", "query": query})}
    )

    def insert(day: int, rows: int) -> None:
        frame = datagen.churn_batch(rows, day=day).drop(columns=["customer_id"])
        frame["event_time"] = DAY0 + timedelta(days=day)
        frame.to_sql("events", engine, index=False, if_exists="append")

    insert(1, 30)
    now = DAY0 + timedelta(days=2)
    arrival = announce_new_rows(sql, engine, now=now)
    assert arrival is not None and arrival.rows == 30
    assert arrival.to_payload()["reason"].startswith("new data: 30 new rows in 1970-01-01")
    assert announce_new_rows(sql, engine, now=now + timedelta(hours=1)) is None  # announced once
    insert(3, 20)  # arrives while the first run has not started yet
    assert announce_new_rows(sql, engine, now=DAY0 + timedelta(days=4)).rows == 20  # type: ignore[union-attr]

    # The data-arrival run (no interval) extracts everything since the watermark: all 50 rows.
    start, end = sql_window(sql, None, None, DAY0 + timedelta(days=4, hours=1))
    landed = land_sql_window(sql, engine, start, end)
    assert landed is not None and len(pd.read_parquet(landed)) == 50
    # The next scheduled run starts where that one ended; a backfill reads exactly its interval
    # and leaves the watermark alone.
    interval = (DAY0 + timedelta(days=3), DAY0 + timedelta(days=5))
    assert sql_window(sql, *interval, interval[1]) == (end, interval[1])
    assert sql_window(sql, *interval, interval[1], incremental=False) == interval
    assert land_sql_window(sql, engine, *interval, advance_watermark=False) is not None
    assert sql_window(sql, None, None, end)[0] == end
    assert announce_new_rows(sql, engine, now=DAY0 + timedelta(days=5)) is None


def test_run_note_is_written_once_by_the_scheduler_listener() -> None:
    from ct_airflow.run_notes import on_dag_run_running

    event = SimpleNamespace(extra={"payload": {"reason": "new data: 20 new rows in a .. b"}})
    run = SimpleNamespace(
        dag_id="ct_warehouse",
        run_id="asset_triggered__1",
        run_type="asset_triggered",
        conf={},
        note=None,
        consumed_asset_events=[event],
        run_after=DAY0,
        logical_date=None,
    )
    on_dag_run_running(run, "started")
    assert run.note == "Trigger: data_arrival. new data: 20 new rows in a .. b"
    run.note = "written by a person"
    on_dag_run_running(run, "started")
    assert run.note == "written by a person"
    other = SimpleNamespace(dag_id="etl_daily", note=None)
    on_dag_run_running(other, "started")
    assert other.note is None


def test_model_loading_lookups_do_not_flood_task_logs_with_airflow_deprecations() -> None:
    import importlib
    import pickle
    import warnings

    import airflow.utils.timezone  # noqa: F401 - one of the modules with deprecated attributes
    import scipy.special

    import ct_airflow

    def airflow_warnings(install_filter: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if install_filter:
                importlib.reload(ct_airflow)  # what importing any operator does in a task process
            pickle.whichmodule(scipy.special.agm, "agm")
        return [str(w.message) for w in caught if "airflow" in str(w.message)]

    assert airflow_warnings(install_filter=False)  # the flood this guards against
    assert airflow_warnings(install_filter=True) == []


def _first_arrival(
    churn: PipelineConfig, *, poll_seconds: float, land_after: float = 0.5
) -> tuple[list[str], str]:
    """Start the landing watch, land a batch, return what it announced and the batch's name."""
    import asyncio

    from include.ct.data.arrival import watch_landing

    async def scenario() -> tuple[list[str], str]:
        arrivals = watch_landing(churn.name, poll_seconds=poll_seconds, settle_seconds=0)
        try:
            first = asyncio.ensure_future(anext(arrivals))
            await asyncio.sleep(land_after)
            batch = await asyncio.to_thread(datagen.write_batch, churn, rows=50)
            arrival = await asyncio.wait_for(first, timeout=30)
            return arrival.files, batch.name
        finally:
            await arrivals.aclose()

    return asyncio.run(scenario())


def test_the_watch_announces_a_batch_when_it_lands_not_at_the_next_poll(churn: PipelineConfig) -> None:
    files, batch = _first_arrival(churn, poll_seconds=3600)  # a poll would never come in time
    assert files == [batch]


def test_the_watch_falls_back_to_polling_where_the_file_system_sends_no_events(
    churn: PipelineConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import watchfiles

    def no_events(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watchfiles, "awatch", no_events)
    files, batch = _first_arrival(churn, poll_seconds=0.2)
    assert files == [batch]
    assert "polling every 0.2 s" in caplog.text
