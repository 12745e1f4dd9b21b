"""Batch runs started by the champion Asset score only when the event names a new champion."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from ct_airflow.operators.base import announced_champions
from ct_airflow.operators.batch import ResolveModelOperator


def _context(*extras: dict[str, Any] | None) -> dict[str, Any]:
    events = {"ct_churn_champion": [SimpleNamespace(extra=extra) for extra in extras]} if extras else {}
    dag_run = SimpleNamespace(
        run_type="asset_triggered" if extras else "manual",
        conf={},
        run_after=datetime(2026, 12, 2, tzinfo=UTC),
        logical_date=None,
        dag_id="ct_churn_batch",
        run_id="r1",
    )
    return {"triggering_asset_events": events, "dag_run": dag_run, "params": {}}


def test_the_versions_announced_are_read_from_the_events_that_started_the_run() -> None:
    assert announced_champions(_context()) is None  # not started by an Asset event
    assert announced_champions(_context({"version": "4", "payload": {}})) == ["4"]
    assert announced_champions(_context(None, {})) == []  # a deploy that only staged a challenger


def test_a_run_started_by_an_event_without_a_new_champion_skips_before_scoring() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    resolve = ResolveModelOperator(task_id="resolve", pipeline="churn")
    with pytest.raises(AirflowSkipException, match="The champion did not change"):
        resolve.execute(_context({}))  # type: ignore[arg-type]
