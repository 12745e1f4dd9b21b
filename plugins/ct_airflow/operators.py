"""Operators of the continuous-training DAG: small classes whose ``execute`` calls the library.

Each loads its pipeline config by name at run time, returns small JSON for XCom and sets the
address of what it produced for its extra link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal, TypeAlias

from airflow.sdk import BaseOperator, Context, XComArg
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ct_airflow.hooks.serving import PredictionServiceHook
from ct_airflow.links import MlflowModelVersionLink, MlflowRunLink, ValidationReportLink, set_link
from ct_airflow.run_notes import describe_trigger
from ct_airflow.runtime import read_step_result, run_step_in_process, write_step_request

INCREMENTAL_RUN_TYPES = frozenset({"scheduled", "asset_triggered"})
# An upstream task's result: its ``.output`` when the DAG is built, the dict it returned at run time.
Upstream: TypeAlias = XComArg | Mapping[str, Any]


def trigger_of(context: Context) -> tuple[str, str]:
    """Why this run exists: (kind, reason), from the run conf, the trigger form or the Asset event."""
    dag_run = context["dag_run"]
    payloads = [
        (event.extra or {}).get("payload") or {}
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
    ]
    return describe_trigger(
        str(getattr(dag_run.run_type, "value", dag_run.run_type)),
        dag_run.conf or {},
        payloads,
        run_after=dag_run.run_after,
        logical_date=dag_run.logical_date,
        params=context.get("params") or {},
    )


def _lineage(pipeline: str, context: Context, data_version: str) -> Any:
    from include.ct.registry.registry import Lineage, code_version

    dag_run = context["dag_run"]
    kind, reason = trigger_of(context)
    return Lineage(
        pipeline=pipeline,
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        data_version=data_version,
        code_version=code_version(),
        trigger=kind,
        reason=reason,
    )


def _as_float(value: Any) -> float | None:
    if value in (None, "", "None"):
        return None
    return float(value)


class _PipelineOperator(BaseOperator):
    """A task of one pipeline, whose config it loads by name at run time.

    :param pipeline: the pipeline config's ``name`` (templated).
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#e8f4fd"

    def __init__(self, *, pipeline: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline

    def load_config(self) -> Any:
        from include.ct.config import find_pipeline_config

        return find_pipeline_config(self.pipeline)


class _SnapshotOperator(_PipelineOperator):
    """An operator that works on the snapshot the extract task returned.

    :param snapshot: the extract task's result (``extract.output``): data version, batches, paths.
    """

    template_fields: Sequence[str] = ("pipeline", "snapshot")

    def __init__(self, *, snapshot: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot


class ExtractBatchesOperator(_PipelineOperator):
    """Snapshot the new batches of the landing zone; skip the run when nothing arrived.

    :param force: snapshot the accepted data even when no new batch arrived; a bool or a template
        rendering to ``true``/``false`` (``"{{ params.force }}"``).
    """

    template_fields: Sequence[str] = ("pipeline", "force")

    def __init__(self, *, force: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.force = force

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.data.extract import NoNewDataError, extract

        force = str(self.force).lower() in ("true", "1", "yes")
        kind, reason = trigger_of(context)
        self.log.info("Run triggered by %s: %s", kind, reason)
        context["ti"].xcom_push(key="trigger", value={"kind": kind, "reason": reason})
        config = self.load_config()
        only = self._land_sql_window(config, context) if config.source.type == "sql" else None
        try:
            snapshot = extract(config, force=force, only=only)
        except NoNewDataError as exc:
            raise AirflowSkipException(f"Nothing to train on: {exc}") from exc
        return snapshot.to_dict()

    def _land_sql_window(self, config: Any, context: Context) -> list[str] | None:
        """Land this run's window; exact-interval runs then snapshot only that window's file."""
        from airflow.sdk import BaseHook

        from include.ct.data.extract import land_sql_window, sql_batch_name, sql_window

        dag_run = context["dag_run"]
        run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
        # Backfills and manual runs for a chosen date re-read exactly their interval; the rest
        # continue from the watermark so the incremental stream has no gap and no overlap.
        incremental = run_type in INCREMENTAL_RUN_TYPES or bool((dag_run.conf or {}).get("trigger"))
        start, end = sql_window(
            config,
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            dag_run.run_after,
            incremental=incremental,
        )
        hook: Any = BaseHook.get_hook(config.source.conn_id)
        landed = land_sql_window(
            config, hook.get_sqlalchemy_engine(), start, end, advance_watermark=incremental
        )
        window = "incremental" if incremental else "exact interval"
        self.log.info("SQL window (%s) %s .. %s: %s", window, start, end, landed or "no new rows")
        return None if incremental else [sql_batch_name(start, end)]


class ValidateDataOperator(_SnapshotOperator):
    """Run the GX suite on every batch; quarantine bad batches and fail, or accept the snapshot."""

    operator_extra_links = (ValidationReportLink(),)
    ui_color = "#fdf1e8"

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.data.extract import Snapshot
        from include.ct.data.validate import DataValidationError, validate_snapshot
        from include.ct.monitoring.drift import snapshot_value_skew

        config = self.load_config()
        snapshot = Snapshot.from_dict(self.snapshot)
        if not snapshot.new_data:
            self.log.info("Forced run without new data: nothing new to validate")
            return {"data_version": snapshot.data_version, "success": True, "new_data": False}
        self._set_report_link(config.name, snapshot.data_version)
        try:
            outcome = validate_snapshot(config, snapshot)
        except DataValidationError as exc:
            # Retrying cannot fix the data: fail now, the batch is already in quarantine.
            raise AirflowFailException(str(exc)) from exc
        skew = snapshot_value_skew(config, snapshot)
        if skew["drifted"]:
            self.log.warning(
                "Value skew against champion v%s (PSI > %s): %s",
                skew["champion"],
                config.validation.drift_threshold,
                skew["drifted"],
            )
        self.log.info("Per-feature PSI against the champion's training data: %s", skew["psi"])
        return {
            "data_version": outcome.data_version,
            "success": outcome.success,
            "new_data": True,
            "report": outcome.report_path,
            "value_skew": skew,
        }

    def _set_report_link(self, pipeline: str, data_version: str) -> None:
        from airflow.configuration import conf

        from ct_airflow.reports import report_url

        base = conf.get("api", "base_url", fallback="http://localhost:8080")
        set_link(self, ValidationReportLink, report_url(base, pipeline, data_version))


class _StepOperator(_PipelineOperator):
    """A heavy step (train, evaluate) that runs in this worker or in a container of the runtime image.

    With ``runtime: {type: process}`` one task runs the step (``phase="run"``). With ``runtime:
    {type: docker}`` the DAG factory emits three tasks: this operator with ``phase="request"``
    writes the step's request to artifact storage and returns where, a ``DockerOperator`` runs
    ``python -m include.ct.steps`` on it, and this operator with ``phase="collect"`` reads the
    result the container wrote and returns it, so downstream tasks see the same XCom either way.

    :param phase: ``run`` (in process), ``request`` or ``collect`` (around a container).
    :param exchange: with ``phase="collect"``, the request task's result (its ``.output``).
    """

    step: str = ""

    def __init__(
        self,
        *,
        phase: Literal["run", "request", "collect"] = "run",
        exchange: Upstream | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if phase == "collect" and exchange is None:
            raise ValueError(f"{self.task_id}: phase 'collect' needs the request task's exchange")
        self.phase = phase
        self.exchange = exchange

    def build_request(self, context: Context) -> dict[str, Any]:
        raise NotImplementedError

    def report(self, result: dict[str, Any]) -> None:
        """Set links and log what the step decided; the same in every phase that has a result."""

    def execute(self, context: Context) -> dict[str, Any]:
        config = self.load_config()
        if self.phase == "collect":
            result = read_step_result(self.exchange, self.step)  # type: ignore[arg-type]
        else:
            request = self.build_request(context)
            if self.phase == "request":
                return write_step_request(config, context["run_id"], self.step, request)
            result = run_step_in_process(config, self.step, request)
        self.report(result)
        return result


class TrainChallengerOperator(_StepOperator):
    """Fit the configured scikit-learn Pipeline on the accepted data and log it to MLflow.

    :param snapshot: the extract task's result (``extract.output``).
    """

    template_fields: Sequence[str] = ("pipeline", "snapshot", "exchange")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#eafbea"
    step = "train"

    def __init__(self, *, snapshot: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.snapshot = snapshot

    def build_request(self, context: Context) -> dict[str, Any]:
        lineage = _lineage(self.pipeline, context, self.snapshot["data_version"])
        return {"lineage": asdict(lineage)}

    def report(self, result: dict[str, Any]) -> None:
        set_link(self, MlflowRunLink, result.get("run_url"))


class EvaluateChallengerOperator(_StepOperator):
    """Score challenger and champion on the same held-out rows and decide promotion.

    :param trained: the train task's result (``train.output``): MLflow run id, held-out split.
    :param min_improvement: this run's promotion margin in metric units instead of the config's;
        a number, None, or a template (``"{{ params.min_improvement }}"``; empty means None).
    """

    template_fields: Sequence[str] = ("pipeline", "trained", "min_improvement", "exchange")
    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#f3eafd"
    step = "evaluate"

    def __init__(
        self, *, trained: Upstream, min_improvement: float | str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.trained = trained
        self.min_improvement = min_improvement

    def build_request(self, context: Context) -> dict[str, Any]:
        margin = _as_float(self.min_improvement)
        if margin is not None:
            self.log.info("Promotion margin overridden for this run: %s", margin)
        return {
            "run_id": self.trained["run_id"],
            "test_path": self.trained["test_path"],
            "min_improvement": margin,
        }

    def report(self, result: dict[str, Any]) -> None:
        set_link(self, MlflowRunLink, self.trained.get("run_url"))
        for reason in result.get("reasons", []):
            self.log.info("gate: %s", reason)


class RegisterModelOperator(_PipelineOperator):
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
        lineage = _lineage(config.name, context, self.trained["training_data_version"])
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


class DeployModelOperator(_PipelineOperator):
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
        return self._deploy_directly(config, str(self.registered["version"]), self.decision["summary"])

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
        from include.ct.online.rollout import OnlineValidationError, stage_version
        from include.ct.registry.deploy import DeploymentError

        version = str(self.registered["version"])
        service = PredictionServiceHook(self.ct_serving_conn_id).get_conn()
        try:
            staged = stage_version(
                config, version, self.trained["test_path"], reason=self.decision["summary"], service=service
            )
        except (OnlineValidationError, DeploymentError) as exc:
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        if staged.deployed_directly:
            self.log.info("version %s deployed directly: %s", version, staged.reason)
            return staged.to_dict()
        assert service is not None  # stage_version refuses to stage without one
        self.log.info(
            "version %s staged for %s validation at %s: waiting for the online decision",
            version,
            config.deploy.strategy,
            staged.staged,
        )
        context["ti"].xcom_push(key="online", value={"outcome": "staged", **staged.to_dict()})
        self._defer(config, version, service.base_url)
        return staged.to_dict()  # not reached: defer hands the task to the triggerer

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
            raise AirflowFailException(str(exc)) from exc
        finally:
            if service is not None:
                service.close()
        note = {**event, "outcome": outcome["action"], "reason": decision.reason, "version": version}
        context["ti"].xcom_push(key="online", value=note)
        if outcome["action"] == "advance" and service is not None:
            self._defer(config, version, service.base_url)
        if outcome["action"] == "rollback":
            raise AirflowFailException(
                f"version {version} was rolled back in online validation, the champion stays: "
                f"{decision.reason}"
            )
        return {**outcome, "reason": decision.reason}


class RollbackChampionOperator(_PipelineOperator):
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
        return result


class MonitorOperator(_PipelineOperator):
    """Measure drift and live quality against the champion, report to MLflow, decide on retraining."""

    operator_extra_links = (MlflowRunLink(),)
    ui_color = "#e8fdf5"

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.monitoring.monitor import assess, record

        config = self.load_config()
        report = assess(config)
        for source, scores in report.scores.items():
            self.log.info("%s drift (%s, threshold %s): %s", source, report.test, report.threshold, scores)
        if report.live_metric is not None:
            self.log.info(
                "live %s %.4f on %d labelled predictions (offline %s)",
                config.metric,
                report.live_metric,
                report.labelled_rows,
                report.champion_metric,
            )
        self.log.info("decision: %s - %s", "retrain" if report.retrain else "no retraining", report.reason)
        lineage = _lineage(config.name, context, "")
        url = record(config, report, lineage) if report.champion else None
        set_link(self, MlflowRunLink, url)
        return report.to_dict()
