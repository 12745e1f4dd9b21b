"""Waiting for a batch day's late input: the trigger that watches for it and the task's decision."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ct_airflow.operators.base import resume_hold_seconds
from ct_airflow.operators.batch import LocateBatchOperator
from ct_airflow.triggers import BatchInputTrigger
from include.ct.config import PipelineConfig
from tests.helpers.triggers import first_event
from tools import datagen

DAY = date(2026, 12, 1)


def _deadline(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_the_trigger_serializes_to_what_rebuilds_it() -> None:
    trigger = BatchInputTrigger("churn", DAY.isoformat(), _deadline(60), poll_seconds=5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "ct_airflow.triggers.BatchInputTrigger"
    assert BatchInputTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_the_trigger_fires_once_the_days_files_have_landed_and_settled(churn: PipelineConfig) -> None:
    lands = threading.Timer(0.5, datagen.write_scoring_day, args=(churn, DAY), kwargs={"rows": 50})
    started = time.monotonic()
    lands.start()
    try:
        event = first_event(BatchInputTrigger("churn", DAY.isoformat(), _deadline(30), poll_seconds=0.3))
    finally:
        lands.join()
    assert event["last_look"] is False
    assert 0.5 < time.monotonic() - started < 10


def test_the_trigger_fires_for_a_last_look_at_the_deadline(churn: PipelineConfig) -> None:
    started = time.monotonic()
    event = first_event(BatchInputTrigger("churn", DAY.isoformat(), _deadline(0.8), poll_seconds=0.3))
    assert event["last_look"] is True
    assert time.monotonic() - started >= 0.7


def test_the_trigger_holds_an_early_last_look_for_the_deferring_workers_exit(churn: PipelineConfig) -> None:
    started = time.monotonic()
    trigger = BatchInputTrigger("churn", DAY.isoformat(), _deadline(0.2), poll_seconds=0.3, hold_seconds=1.0)
    event = first_event(trigger)
    assert event["last_look"] is True
    assert time.monotonic() - started >= 1.0


def _locate() -> LocateBatchOperator:
    return LocateBatchOperator(task_id="locate", pipeline="churn", resolved={"day": DAY.isoformat()})


def test_a_missing_input_before_the_deadline_defers_to_the_trigger_with_a_timeout() -> None:
    from airflow.sdk.exceptions import TaskDeferred

    deadline = _deadline(600)
    with pytest.raises(TaskDeferred) as deferred:
        _locate().look_for_input({}, {"deadline": deadline, "last_look": False})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, BatchInputTrigger)
    assert (trigger.day, trigger.deadline) == (DAY.isoformat(), deadline)
    assert trigger.hold_seconds == resume_hold_seconds()  # an early event waits for the worker's exit
    assert deferred.value.method_name == "look_for_input"
    assert timedelta(seconds=600) < deferred.value.timeout < timedelta(seconds=1000)  # type: ignore[operator]


@pytest.mark.parametrize("event", [{"last_look": True, "seconds": 600}, {"last_look": False, "seconds": -1}])
def test_a_missing_input_at_the_last_look_or_past_the_deadline_skips_with_the_reason(
    event: dict[str, Any],
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    payload = {"deadline": _deadline(event["seconds"]), "last_look": event["last_look"]}
    with pytest.raises(AirflowSkipException, match=r"Nothing to score: no \*.csv or \*.parquet file"):
        _locate().look_for_input({}, payload)  # type: ignore[arg-type]


def test_an_input_that_is_there_is_located_without_waiting(churn: PipelineConfig) -> None:
    datagen.write_scoring_day(churn, DAY, rows=50)
    first = {"deadline": _deadline(600), "last_look": False, "first_look": True}
    located = _locate().look_for_input({}, first)  # type: ignore[arg-type]
    assert located["day"] == DAY.isoformat() and len(located["files"]) == 1
    assert located["waited_seconds"] == 0


def test_an_input_found_after_deferring_reports_how_long_the_run_waited(
    churn: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    datagen.write_scoring_day(churn, DAY, rows=50)
    waiting = churn.model_copy(update={"batch": churn.batch.model_copy(update={"input_wait_minutes": 10})})
    locate = _locate()
    monkeypatch.setattr(locate, "load_config", lambda: waiting)
    # the trigger's event 30 s into a 10 min wait
    located = locate.look_for_input({}, {"deadline": _deadline(570), "last_look": False})  # type: ignore[arg-type]
    assert 29 < located["waited_seconds"] < 40
