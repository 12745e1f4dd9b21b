"""A DeployModelOperator for unit tests of its retries: version 2 of ``config``, and staging it
again fails the test (a retry must report or finish what an earlier try did, never restage)."""

from __future__ import annotations

from typing import Any

import pytest

from ct_airflow.operators.deployment import DeployModelOperator


def retried_deploy_operator(monkeypatch: pytest.MonkeyPatch, config: Any) -> DeployModelOperator:
    operator = DeployModelOperator(
        task_id="deploy",
        pipeline="churn",
        registered={"version": "2"},
        trained={"test_path": "unused"},
        decision={"summary": "gate passed"},
    )
    monkeypatch.setattr(operator, "load_config", lambda: config)

    def no_staging(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a retry must not stage the version again")

    monkeypatch.setattr("include.ct.online.rollout.stage_version", no_staging)
    return operator
