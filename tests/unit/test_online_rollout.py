"""Carrying out the online decision, on a real (SQLite) MLflow registry: what the version's tags say
must match what happened, and guardrails are decided before the evidence is read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from include.ct.config import PipelineConfig
from include.ct.online import rollout
from include.ct.online.decision import INFRA_PREFIX, OnlineDecision
from include.ct.registry import registry, staging
from include.ct.registry.deploy import DECISION, DeploymentError
from tests.helpers.deploy_operator import retried_deploy_operator


@pytest.fixture
def config(churn: PipelineConfig) -> Iterator[PipelineConfig]:
    """churn under its own registered model, with v1 the champion and v2 staged in shadow against it."""
    isolated = churn.model_copy(update={"model_name": f"online-rollout-{uuid.uuid4().hex[:8]}"})
    client = registry.client()
    client.create_registered_model(isolated.registered_model_name)
    for _ in range(2):
        client.create_model_version(isolated.registered_model_name, source="file:///nowhere")
    registry.set_champion_alias(isolated, "1")
    staging.stage(isolated, "2", strategy="shadow", share=1.0, against="1")
    yield isolated
    client.delete_registered_model(isolated.registered_model_name)


def tags(config: PipelineConfig, version: str) -> dict[str, str]:
    return registry.client().get_model_version(config.registered_model_name, version).tags


@dataclass
class Deployed:
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version}


def test_promoted_is_written_only_once_the_version_serves(
    config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    def deploy(config: PipelineConfig, version: str, *args: Any, **kwargs: Any) -> Deployed:
        seen.append(tags(config, version).get(staging.STATUS))
        registry.set_champion_alias(config, version)
        staging.unstage(config, version)
        return Deployed(version)

    monkeypatch.setattr(rollout, "deploy_version", deploy)
    outcome = rollout.carry_out(config, "2", OnlineDecision("promote", "better live"), "unused", None)
    assert outcome["action"] == "promote"
    assert seen == ["staged"]  # not yet "promoted" while the deploy ran
    assert tags(config, "2")[staging.STATUS] == "promoted"
    assert rollout.settled_outcome(config, "2") == {
        "action": "promote",
        "version": "2",
        "reason": "better live",
        "already": True,
    }


def test_a_promotion_that_fails_on_the_service_is_recorded_as_rejected(
    config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_deploy(*args: Any, **kwargs: Any) -> None:
        raise DeploymentError("version 2 failed on the live service and was rolled back to 1: smoke test")

    monkeypatch.setattr(rollout, "deploy_version", failing_deploy)
    with pytest.raises(DeploymentError):
        rollout.carry_out(config, "2", OnlineDecision("promote", "better live"), "unused", None)
    assert tags(config, "2")[staging.STATUS] == "rejected_online"
    assert staging.staged_challenger(config) is None
    settled = rollout.settled_outcome(config, "2")
    assert settled is not None and settled["action"] == "rollback"
    assert "smoke test" in settled["reason"]
    # The task's retry reads the same: nothing claims a promotion that did not happen.
    assert rollout.carry_out(config, "2", OnlineDecision("promote", "again"), "unused", None)["action"] == (
        "rollback"
    )


def test_a_version_that_became_champion_before_its_tag_was_written_counts_as_promoted(
    config: PipelineConfig,
) -> None:
    registry.set_champion_alias(config, "2")  # the deploy ran; the worker died before the tag
    staging.unstage(config, "2")
    again = rollout.carry_out(config, "2", OnlineDecision("promote", "better live"), "unused", None)
    assert again == {"action": "promote", "version": "2", "already": True}
    assert rollout.assess(config, "2", None).action == "promote"


def test_a_challenger_the_service_cannot_load_is_rejected_as_an_infra_failure(config: PipelineConfig) -> None:
    reason = f"{INFRA_PREFIX}version 2 did not load: skops refused a type"
    outcome = rollout.carry_out(config, "2", OnlineDecision("rollback", reason), "unused", None)
    assert outcome["action"] == "rollback"
    assert tags(config, "2")[DECISION] == "rejected_infra"
    assert tags(config, "2")[staging.STATUS] == "rejected_infra"
    assert str(registry.get_champion(config).version) == "1"  # type: ignore[union-attr]
    settled = rollout.settled_outcome(config, "2")
    assert settled is not None and settled["action"] == "rollback" and "skops" in settled["reason"]


def test_a_guardrail_breach_is_decided_without_reading_the_evidence(
    config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a breach must not wait for the prediction log and the labels")

    monkeypatch.setattr(rollout, "gather", no_reading)
    status = {"challenger": "2", "versions": {"2": {"requests": 100, "errors": 50, "p99_ms": 5.0}}}
    decision = rollout.assess(config, "2", status)
    assert decision.action == "rollback" and "error rate" in decision.reason
    failed = {"challenger": "2", "challenger_state": "failed", "challenger_error": "no such type"}
    decision = rollout.assess(config, "2", failed)
    assert decision.action == "rollback" and decision.reason.startswith(INFRA_PREFIX)


class TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_a_retry_completes_a_promotion_whose_try_stopped_after_moving_the_champion(
    config: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow retries a deploy task from execute(): the version is the champion, still reads
    'staged', and must end promoted after the deploy's checks ran again, not 'deployed directly'."""
    shadow = config.model_copy(update={"deploy": config.deploy.model_copy(update={"strategy": "shadow"})})
    registry.set_champion_alias(shadow, "2")  # the earlier try's deploy moved it, then the worker died
    checked: list[str] = []

    def deploy(config: PipelineConfig, version: str, *args: Any, **kwargs: Any) -> Deployed:
        checked.append(version)
        staging.unstage(config, version)
        return Deployed(version)

    monkeypatch.delenv("CT_SERVING_URL", raising=False)
    monkeypatch.setattr(rollout, "deploy_version", deploy)
    operator = retried_deploy_operator(monkeypatch, shadow)
    ti = TaskInstance()
    result = operator.execute({"ti": ti, "task": operator, "outlet_events": {}})  # type: ignore[arg-type]
    assert result["action"] == "promote" and checked == ["2"]
    assert tags(shadow, "2")[staging.STATUS] == "promoted"
    assert ti.pushed["online"]["outcome"] == "promote"
    assert ti.pushed["online"]["steps"] == ["shadow at 100%"]
    assert rollout.settled_outcome(shadow, "2")["action"] == "promote"  # type: ignore[index]
    # A direct deploy's version (staged only for register's infra check) is not mistaken for one.
    assert rollout.complete_interrupted_promotion(shadow, "1", "unused", None) is None


def test_moving_the_champion_twice_moves_it_once_whatever_the_store_s_version_type(
    config: PipelineConfig,
) -> None:
    """A SQL store gives versions as int, the REST client as str: a repeat must still be a no-op
    and keep the version it replaced (which a manual rollback goes back to)."""
    assert registry.move_champion(config, "2", "first") == ("1", True)
    assert registry.move_champion(config, "2", "again") == ("1", False)
    assert registry.get_champion(config).tags["ct.previous_champion"] == "1"  # type: ignore[union-attr]
