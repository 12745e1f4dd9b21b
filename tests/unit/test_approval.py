"""The deployment approval records every answer on the model version it was asked about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ct_airflow.approval import DeployApprovalOperator


def answer(option: str, user: str | None) -> dict[str, Any]:
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": datetime.now(UTC),
        "responded_by_user": {"id": user, "name": user} if user else None,
    }


@pytest.mark.parametrize(
    ("option", "user", "expected"),
    [
        ("Approve", "ann", {"ct.approval": "approved by ann"}),
        (
            "Reject",
            "bob",
            {
                "ct.approval": "rejected by bob",
                "ct.decision": "rejected_by_reviewer",
                "ct.decision_reason": "rejected by bob",
            },
        ),
        (
            "Reject",
            None,
            {
                "ct.approval": "rejected by timeout default",
                "ct.decision": "rejected_by_reviewer",
                "ct.decision_reason": "rejected by timeout default",
            },
        ),
    ],
)
def test_answer_is_tagged_on_the_version(
    monkeypatch: pytest.MonkeyPatch, option: str, user: str | None, expected: dict[str, str]
) -> None:
    recorded: list[tuple[str, str, dict[str, str]]] = []
    monkeypatch.setattr(
        "include.ct.registry.registry.set_version_tags",
        lambda config, version, tags: recorded.append((config.name, version, tags)),
    )
    operator = DeployApprovalOperator(
        task_id="approve", pipeline="churn", registered={"version": "4"}, subject="Deploy v4?"
    )
    assert operator.defaults == ["Reject"]
    operator.execute_complete(context={"ti": None, "task": operator}, event=answer(option, user))  # type: ignore[arg-type]
    assert recorded == [("churn", "4", expected)]
