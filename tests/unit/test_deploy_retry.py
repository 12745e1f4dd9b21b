"""A deploy retried after its online decision was carried out reports that decision and moves nothing.

Airflow can put a resumed deferred task up for retry when the executor's event for the try that
deferred arrives late; the retry must neither deploy again nor describe itself as the promotion.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from include.ct.config import find_pipeline_config
from include.ct.online.rollout import settled_outcome
from include.ct.registry import staging
from tests.helpers.deploy_operator import retried_deploy_operator

STEPS = "\n".join(
    [
        "2026-12-07T10:00:00+00:00 staged (shadow, share 1)",
        "2026-12-07T10:05:00+00:00 promoted: live roc_auc +0.031 [0.012, 0.050] on 1200 labels",
    ]
)


class FakeRegistry:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(version=version, tags=self.tags)


class FakeTaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@pytest.fixture
def shadow_config() -> Any:
    config = find_pipeline_config("churn")
    return config.model_copy(update={"deploy": config.deploy.model_copy(update={"strategy": "shadow"})})


def _use_tags(monkeypatch: pytest.MonkeyPatch, tags: dict[str, str]) -> None:
    monkeypatch.setattr("include.ct.registry.registry.client", lambda: FakeRegistry(tags))


def test_the_outcome_is_read_back_from_the_versions_tags(
    monkeypatch: pytest.MonkeyPatch, shadow_config: Any
) -> None:
    _use_tags(monkeypatch, {staging.STATUS: "staged", staging.STEPS: STEPS.splitlines()[0]})
    assert settled_outcome(shadow_config, "2") is None  # still under validation
    _use_tags(monkeypatch, {})
    assert settled_outcome(shadow_config, "2") is None  # never staged
    _use_tags(monkeypatch, {staging.STATUS: "promoted", staging.STEPS: STEPS})
    assert settled_outcome(shadow_config, "2") == {
        "action": "promote",
        "version": "2",
        "reason": "live roc_auc +0.031 [0.012, 0.050] on 1200 labels",
        "already": True,
    }


def test_a_retry_after_the_promotion_reports_it_and_announces_the_champion(
    monkeypatch: pytest.MonkeyPatch, shadow_config: Any
) -> None:
    from airflow.sdk import Asset

    _use_tags(monkeypatch, {staging.STATUS: "promoted", staging.STEPS: STEPS})
    operator = retried_deploy_operator(monkeypatch, shadow_config)
    asset = Asset(name=shadow_config.champion_asset)
    operator.outlets = [asset]
    ti = FakeTaskInstance()
    events = {asset: SimpleNamespace(extra={})}
    result = operator.execute({"ti": ti, "task": operator, "outlet_events": events})  # type: ignore[arg-type]
    assert result["action"] == "promote" and result["already"] is True
    assert ti.pushed["online"]["outcome"] == "promote"
    assert events[asset].extra["version"] == "2"
    assert "promoted after online validation: live roc_auc" in events[asset].extra["payload"]["reason"]


def test_a_retry_after_the_rollback_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, shadow_config: Any
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    steps = "2026-12-07T10:05:00+00:00 rejected_online: challenger p99 410 ms over the 250 ms budget"
    _use_tags(monkeypatch, {staging.STATUS: "rejected_online", staging.STEPS: steps})
    operator = retried_deploy_operator(monkeypatch, shadow_config)
    ti = FakeTaskInstance()
    with pytest.raises(AirflowFailException, match=r"rolled back in online validation.*p99 410 ms"):
        operator.execute({"ti": ti, "task": operator, "outlet_events": {}})  # type: ignore[arg-type]
    assert ti.pushed["online"]["outcome"] == "rollback"


def test_the_run_note_lists_every_traffic_step_and_a_failed_promotion_says_so(
    monkeypatch: pytest.MonkeyPatch, shadow_config: Any
) -> None:
    """The path comes from the version's steps tag, so a retried task (whose XComs were cleared)
    still tells it whole."""
    from airflow.sdk.exceptions import AirflowFailException

    from ct_airflow.run_notes import online_note
    from include.ct.registry.deploy import DeploymentError

    steps = [
        "2026-12-07T10:00:00+00:00 staged (infra, share 0)",
        "2026-12-07T10:00:05+00:00 staged (canary, share 0.05)",
        "2026-12-07T10:20:00+00:00 share 0.25: 200 healthy requests at 5%: next step 25%",
    ]
    _use_tags(monkeypatch, {staging.STATUS: "staged", staging.STEPS: "\n".join(steps)})
    operator = retried_deploy_operator(monkeypatch, shadow_config)
    ti = FakeTaskInstance()
    monkeypatch.setattr(
        "include.ct.online.rollout.carry_out",
        lambda config, version, decision, *args: {"action": "advance", "version": version, "share": 0.25},
    )
    advance = {"action": "advance", "reason": "200 healthy requests at 5%: next step 25%", "share": 0.25}
    operator.execute_complete({"ti": ti, "task": operator}, advance)  # type: ignore[arg-type]
    assert ti.pushed["online"]["steps"] == ["canary at 5%", "25%"]

    def failing(*args: Any) -> None:
        raise DeploymentError("version 2 failed on the live service and was rolled back to 1: smoke test")

    monkeypatch.setattr("include.ct.online.rollout.carry_out", failing)
    promote = {"action": "promote", "reason": "live roc_auc: challenger no worse"}
    with pytest.raises(AirflowFailException, match="smoke test"):
        operator.execute_complete({"ti": ti, "task": operator}, promote)  # type: ignore[arg-type]
    assert online_note(ti.pushed["online"]) == (
        "Online: rolled back after canary at 5% -> 25%. promotion failed: version 2 failed on the live "
        "service and was rolled back to 1: smoke test"
    )


def test_the_traffic_path_follows_the_last_staging() -> None:
    lines = [
        "t staged (infra, share 0)",
        "t staged (shadow, share 1)",
        "t rejected_online: guardrail",
        "t staged (canary, share 0.05)",
        "t share 0.25: next step",
        "t share 0.5: next step",
        "t promoted: live roc_auc",
    ]
    assert staging.traffic_path("\n".join(lines)) == ["canary at 5%", "25%", "50%"]
    assert staging.traffic_path("t staged (infra, share 0)") == []
    assert staging.traffic_path("") == []
