"""The trigger that waits for the online decision: what it serializes, and that its first event
waits for the deferring worker's exit to reach the scheduler (apache/airflow issue 72716)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from ct_airflow.operators.base import SCHEDULER_LOOP_MARGIN_SECONDS
from ct_airflow.operators.deployment import DeployModelOperator
from ct_airflow.triggers import OnlineValidationTrigger
from include.ct.config import PipelineConfig
from include.ct.online.decision import OnlineDecision
from tests.helpers.triggers import first_event

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens: the trigger reads no service status


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``assess`` answers promote; the list collects when it was asked."""
    asked: list[float] = []

    def promote(config: PipelineConfig, version: str, status: dict[str, Any] | None) -> OnlineDecision:
        asked.append(time.monotonic())
        return OnlineDecision("promote", f"version {version} proven")

    monkeypatch.setattr("include.ct.online.rollout.assess", promote)
    return asked


def test_the_trigger_serializes_to_what_rebuilds_it() -> None:
    trigger = OnlineValidationTrigger("churn", "2", UNREACHABLE, poll_seconds=3, hold_seconds=7.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "ct_airflow.triggers.OnlineValidationTrigger"
    assert kwargs["hold_seconds"] == 7.5
    assert OnlineValidationTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_a_decision_made_at_once_fires_only_after_the_hold(decisions: list[float]) -> None:
    started = time.monotonic()
    event = first_event(OnlineValidationTrigger("churn", "2", UNREACHABLE, hold_seconds=1.0))
    assert event["action"] == "promote"
    assert decisions[0] - started < 1.0  # decided on the first look ...
    assert time.monotonic() - started >= 1.0  # ... announced once the hold was over


def test_without_a_hold_the_decision_fires_on_the_first_look(decisions: list[float]) -> None:
    event = first_event(OnlineValidationTrigger("churn", "2", UNREACHABLE, guardrail_seconds=30))
    assert event["action"] == "promote"
    assert len(decisions) == 1  # no second look: the 30 s guardrail sleep never ran


def test_the_deploy_task_holds_its_trigger_past_the_workers_exit_report(
    monkeypatch: pytest.MonkeyPatch, churn: PipelineConfig
) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "3")
    operator = DeployModelOperator(
        task_id="deploy", pipeline="churn", registered={"version": "2"}, trained={}, decision={}
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator._defer(churn, "2", UNREACHABLE)
    trigger = deferred.value.trigger
    assert isinstance(trigger, OnlineValidationTrigger)
    assert trigger.hold_seconds == 3 + SCHEDULER_LOOP_MARGIN_SECONDS
    assert deferred.value.method_name == "execute_complete"
