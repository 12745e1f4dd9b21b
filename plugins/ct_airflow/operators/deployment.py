"""Register, deploy (directly, or after online validation) and roll back the champion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ct_airflow.hooks.serving import PredictionServiceHook
from ct_airflow.links import MlflowModelVersionLink, set_link
from ct_airflow.operators.base import (
    PipelineOperator,
    Upstream,
    announce_champion,
    resume_hold_seconds,
    run_lineage,
)


class RegisterModelOperator(PipelineOperator):
    """Register the promoted challenger and prove it can serve: the live prediction service loads
    it beside the champion (staged as ``challenger`` with no traffic, so the promotion is a swap),
    or, where no service answers, a fresh serving process loads it and predicts held-out rows.

    :param trained: the train task's result (``train.output``).
    :param decision: the evaluate task's result (``evaluate.output``): promote or not, and why.
    :param ct_serving_conn_id: the connection naming the prediction service (``ct_serving``).
    """

    template_fields: Sequence[str] = ("pipeline", "trained", "decision")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#fffbe6"

    def __init__(
        self,
        *,
        trained: Upstream,
        decision: Upstream,
        ct_serving_conn_id: str = PredictionServiceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trained = trained
        self.decision = decision
        self.ct_serving_conn_id = ct_serving_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.registry.deploy import InfraValidationError, register_candidate

        config = self.load_config()
        if not self.decision.get("promote"):
            raise AirflowSkipException(f"Gate rejected the challenger: {self.decision['summary']}")
        lineage = run_lineage(config.name, context, self.trained["training_data_version"])
        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            candidate = register_candidate(
                config,
                self.trained["run_id"],
                self.trained["test_path"],
                decision=self.decision["summary"],
                lineage=lineage,
                service=service,
            )
        except InfraValidationError as exc:
            # The model itself is broken: a retry would fail the same way. The champion is unchanged.
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        set_link(self, MlflowModelVersionLink, candidate.url)
        self.log.info(
            "registered %s version %s; it can serve (%s)",
            candidate.model_name,
            candidate.version,
            candidate.infra_check,
        )
        return candidate.to_dict()


class DeployModelOperator(PipelineOperator):
    """Deploy the registered version as ``deploy.strategy`` says, and prove the service serves it.

    direct: move ``champion`` at once; the service reloads, must report the new version, answer
    held-out rows exactly as offline and meet the latency budget; any failure moves the alias
    back and fails the task with the reason.
    shadow / canary: stage the version as ``challenger`` beside the champion (the service loading
    it is its infra check), then defer to the triggerer until the online decision: promote (the
    direct path above), roll back (the task fails with the reason; the champion never changed)
    or, for canary, the next traffic step. Every step is tagged on the model version.

    :param registered: the register task's result (``register.output``): the model version.
    :param trained: the train task's result (``train.output``): the held-out rows to check with.
    :param decision: the evaluate task's result (``evaluate.output``): recorded as the reason.
    :param ct_serving_conn_id: the connection naming the prediction service (``ct_serving``).
    """

    template_fields: Sequence[str] = ("pipeline", "registered", "trained", "decision")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#fff3d6"

    def __init__(
        self,
        *,
        registered: Upstream,
        trained: Upstream,
        decision: Upstream,
        ct_serving_conn_id: str = PredictionServiceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registered = registered
        self.trained = trained
        self.decision = decision
        self.ct_serving_conn_id = ct_serving_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        config = self.load_config()
        set_link(self, MlflowModelVersionLink, self.registered.get("url"))
        if config.deploy.strategy != "direct":
            return self._stage(config, context)
        result = self._deploy_directly(config, str(self.registered["version"]), self.decision["summary"])
        announce_champion(context, config, result["version"], "promoted by the gate")
        return result

    def _deploy_directly(self, config: Any, version: str, reason: str) -> dict[str, Any]:
        from include.ct.registry.deploy import DeploymentError, deploy_version

        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            result = deploy_version(
                config, version, self.trained["test_path"], reason=reason, service=service
            )
        except DeploymentError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        self.log.info(
            "champion of %s is now version %s (was %s); checks on the live service: %s",
            result.model_name,
            result.version,
            result.previous_champion,
            result.checks or f"none (connection {self.ct_serving_conn_id} names no service)",
        )
        return result.to_dict()

    def _stage(self, config: Any, context: Context) -> dict[str, Any]:
        from include.ct.online.rollout import (
            OnlineValidationError,
            complete_interrupted_promotion,
            settled_outcome,
            stage_version,
        )
        from include.ct.registry.deploy import DeploymentError

        version = str(self.registered["version"])
        settled = settled_outcome(config, version)
        if settled is not None:  # a retry after the online decision was carried out: report it
            return self._report_settled(context, config, settled)
        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            resumed = complete_interrupted_promotion(config, version, self.trained["test_path"], service)
            if resumed is not None:  # an earlier try promoted it and stopped before recording it
                return self._report_settled(context, config, resumed)
            staged = stage_version(
                config, version, self.trained["test_path"], reason=self.decision["summary"], service=service
            )
        except (OnlineValidationError, DeploymentError) as exc:
            self._push_online(context, config, version, {"outcome": "rollback", "reason": str(exc)})
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        if staged.deployed_directly:
            self.log.info("version %s deployed directly: %s", version, staged.reason)
            announce_champion(context, config, version, staged.reason)
            return staged.to_dict()
        assert service is not None  # stage_version refuses to stage without one
        self.log.info(
            "version %s staged for %s validation at %s: waiting for the online decision",
            version,
            config.deploy.strategy,
            staged.staged,
        )
        self._push_online(context, config, version, {"outcome": "staged", **staged.to_dict()})
        self._defer(config, version, service.base_url)
        return staged.to_dict()  # not reached: defer hands the task to the triggerer

    def _report_settled(self, context: Context, config: Any, settled: dict[str, Any]) -> dict[str, Any]:
        """The decision an earlier try carried out, reported as that try would have; nothing moves."""
        self.log.info(
            "online validation of version %s already ended: %s (%s)",
            settled["version"],
            settled["action"],
            settled["reason"],
        )
        self._push_online(context, config, settled["version"], {"outcome": settled["action"], **settled})
        return self._settle(context, config, settled)

    def _push_online(self, context: Context, config: Any, version: str, value: dict[str, Any]) -> None:
        """The ``online`` XCom the run note reads, with the traffic path from the version's tags
        (so a retried task tells it whole)."""
        from include.ct.registry import registry, staging

        try:
            tags = registry.version_tags(config, version)
            steps = staging.traffic_path(tags.get(staging.STEPS, ""))
        except Exception:  # a note without the path beats a task failed over it
            self.log.warning("could not read the online steps of version %s", version, exc_info=True)
            steps = []
        context["ti"].xcom_push(key="online", value={**value, "steps": steps})

    def _settle(self, context: Context, config: Any, outcome: dict[str, Any]) -> dict[str, Any]:
        """End the task on a carried-out decision: a rollback fails it, a promotion announces it."""
        version, reason = outcome["version"], outcome["reason"]
        if outcome["action"] == "rollback":
            raise AirflowFailException(
                f"version {version} was rolled back in online validation, the champion stays: {reason}"
            )
        if outcome["action"] == "promote":
            announce_champion(context, config, version, f"promoted after online validation: {reason}")
        return outcome

    def _defer(self, config: Any, version: str, service_url: str) -> None:
        from datetime import timedelta

        from ct_airflow.triggers import OnlineValidationTrigger

        self.defer(
            trigger=OnlineValidationTrigger(
                pipeline=config.name,
                version=version,
                service_url=service_url,
                poll_seconds=config.deploy.online.poll_seconds,
                guardrail_seconds=config.deploy.online.guardrail_poll_seconds,
                hold_seconds=resume_hold_seconds(),
            ),
            method_name="execute_complete",
            # The decision itself gives up at max_wait_hours; this only bounds a lost trigger.
            timeout=timedelta(hours=config.deploy.online.max_wait_hours + 1),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Carry out the triggerer's decision: promote, roll back, or defer again at the next step."""
        from include.ct.online.decision import OnlineDecision
        from include.ct.online.rollout import carry_out
        from include.ct.registry.deploy import DeploymentError

        config = self.load_config()
        version = str(self.registered["version"])
        decision = OnlineDecision(
            action=event["action"], reason=str(event["reason"]), share=event.get("share")
        )
        self.log.info("online decision on version %s: %s (%s)", version, decision.action, decision.reason)
        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            outcome = carry_out(config, version, decision, self.trained["test_path"], service)
        except DeploymentError as exc:
            failed = {"outcome": "rollback", "reason": f"promotion failed: {exc}", "version": version}
            self._push_online(context, config, version, {**event, **failed})
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        note = {**event, "outcome": outcome["action"], "reason": decision.reason, "version": version}
        self._push_online(context, config, version, note)
        if outcome["action"] == "advance" and service is not None:
            self._defer(config, version, service.base_url)
        return self._settle(context, config, {**outcome, "reason": decision.reason})


class RollbackChampionOperator(PipelineOperator):
    """Move ``champion`` back to a chosen version (default: the one it replaced) and reload serving.

    :param version: the model version to serve (templated); empty: the one the champion replaced.
    :param reason: why, recorded on the version rolled away from (templated).
    :param ct_serving_conn_id: the connection naming the prediction service (``ct_serving``).
    """

    template_fields: Sequence[str] = ("pipeline", "version", "reason")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        version: str | int = "",
        reason: str = "",
        ct_serving_conn_id: str = PredictionServiceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.reason = reason
        self.ct_serving_conn_id = ct_serving_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.registry.deploy import rollback_champion
        from include.ct.registry.registry import model_version_url

        config = self.load_config()
        target = str(self.version or "").strip() or None
        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            result = rollback_champion(config, target, reason=str(self.reason or "manual"), service=service)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        url = model_version_url(config.registered_model_name, result["to"])
        set_link(self, MlflowModelVersionLink, url)
        self.log.warning("champion of %s: %s -> %s", config.name, result["from"], result["to"])
        announce_champion(context, config, str(result["to"]), f"rolled back: {self.reason or 'manual'}")
        return result
