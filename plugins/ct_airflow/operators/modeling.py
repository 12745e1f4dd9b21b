"""Train and evaluate: the heavy steps, run where ``runtime`` says; evaluate is the gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from airflow.sdk import BaseXCom, Context, SkipMixin

from ct_airflow.links import MlflowRunLink, set_link
from ct_airflow.operators.base import PipelineOperator, Upstream, run_lineage
from ct_airflow.runtime import read_step_result, run_step_in_process, write_step_request


def _as_float(value: Any) -> float | None:
    if value in (None, "", "None"):
        return None
    return float(value)


class _StepOperator(PipelineOperator):
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

    def finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """Act on the step's result once it is known (in ``run`` or ``collect``); returns the XCom."""
        self.report(result)
        return result

    def execute(self, context: Context) -> dict[str, Any]:
        config = self.load_config()
        if self.phase == "collect":
            result = read_step_result(self.exchange, self.step)  # type: ignore[arg-type]
        else:
            request = self.build_request(context)
            if self.phase == "request":
                return write_step_request(config, context["run_id"], self.step, request)
            result = run_step_in_process(config, self.step, request)
        return self.finish(context, result)


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
        lineage = run_lineage(self.pipeline, context, self.snapshot["data_version"])
        return {"lineage": asdict(lineage)}

    def report(self, result: dict[str, Any]) -> None:
        set_link(self, MlflowRunLink, result.get("run_url"))


class EvaluateChallengerOperator(_StepOperator, SkipMixin):
    """Score challenger and champion on the same held-out rows, decide promotion, and stop the run
    there unless the challenger was promoted: registration and deployment are then skipped, as a
    ``ShortCircuitOperator`` would, without a task of their own in between (as TFX's Pusher
    follows the Evaluator's blessing). The decision is the XCom either way.

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

    def finish(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        super().finish(context, result)
        downstream = [task for task in self.get_flat_relatives(upstream=False) if not task.is_teardown]
        if result.get("promote") or not downstream:
            return result
        # skipping ends execute() before Airflow pushes its return value: push the decision first
        context["ti"].xcom_push(key=BaseXCom.XCOM_RETURN_KEY, value=result)
        self.log.info(
            "Not promoted (%s): skipping %s", result.get("outcome"), ", ".join(t.task_id for t in downstream)
        )
        self.skip(ti=context["ti"], tasks=downstream)
        return result  # not reached: skip() hands the downstream tasks to Airflow by raising
