"""Evaluate is the gate: a challenger not promoted skips everything downstream, and its decision
stays evaluate's result for the run note and the UI."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import DownstreamTasksSkipped

from ct_airflow.operators.modeling import EvaluateChallengerOperator

REJECTED = {"promote": False, "outcome": "inconclusive", "reasons": ["the rows cannot tell"]}


class FakeTaskInstance:
    map_index = -1

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _evaluate_then(*downstream: str) -> EvaluateChallengerOperator:
    with DAG(dag_id="gate_test", schedule=None):
        evaluate = EvaluateChallengerOperator(
            task_id="evaluate", pipeline="churn", trained={"run_id": "r1", "test_path": "unused"}
        )
        upstream: Any = evaluate
        for task_id in downstream:
            task = EmptyOperator(task_id=task_id)
            upstream >> task
            upstream = task
    return evaluate


def test_a_challenger_not_promoted_skips_register_and_deploy_and_keeps_its_decision() -> None:
    evaluate = _evaluate_then("register", "approve", "deploy")
    ti = FakeTaskInstance()

    with pytest.raises(DownstreamTasksSkipped) as skipped:
        evaluate.finish({"ti": ti}, REJECTED)  # type: ignore[arg-type]

    assert sorted(skipped.value.tasks) == ["approve", "deploy", "register"]
    assert ti.pushed["return_value"] == REJECTED  # pushed before the skip ends execute()


def test_a_promoted_challenger_continues() -> None:
    evaluate = _evaluate_then("register", "deploy")
    ti = FakeTaskInstance()
    decision = {**REJECTED, "promote": True, "outcome": "promote"}

    assert evaluate.finish({"ti": ti}, decision) == decision  # type: ignore[arg-type]
    assert ti.pushed == {}  # Airflow pushes the return value itself
