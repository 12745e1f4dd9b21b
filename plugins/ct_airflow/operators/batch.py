"""Batch scoring: resolve the champion once, land and validate the day's input, score it.

``ScoreBatchOperator`` scores in the worker (``engine: in_process``) or submits the same scoring
as a Spark job through the Spark provider's hook (``engine: spark``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ct_airflow.links import MlflowModelVersionLink, ValidationReportLink, set_link
from ct_airflow.operators.base import (
    PipelineOperator,
    Upstream,
    announced_champions,
    resume_hold_seconds,
    trigger_of,
)

# Handed to the Spark job: where the library, its configs, its data and MLflow are.
SPARK_JOB_ENVIRONMENT = (
    "PYTHONPATH",
    "CT_DATA_DIR",
    "CT_ARTIFACTS_DIR",
    "CT_PIPELINES_DIR",
    "MLFLOW_TRACKING_URI",
)


class BatchPipelineOperator(PipelineOperator):
    """A task of a pipeline's batch DAG: its config must have a ``batch:`` section."""

    def load_config(self) -> Any:
        from include.ct.batch.partitions import BatchConfigError, batch_spec

        config = super().load_config()
        try:
            batch_spec(config)
        except BatchConfigError as exc:
            raise AirflowFailException(str(exc)) from exc
        return config


class ResolveModelOperator(BatchPipelineOperator):
    """Decide the day this run scores and resolve the ``champion`` alias to a version, once.

    Every later task uses that version, so a promotion during the run takes effect at the next
    run. Without a champion yet the run is skipped with the reason, as is a run started by a
    champion Asset event that names no new version (a deploy that staged a challenger). While a
    challenger is staged for online validation (and ``batch.dual_scoring``), it is resolved too.

    :param date: the day to score, ``YYYY-MM-DD`` (templated); empty: the data interval's day, or
        the last complete day for runs without an interval.
    """

    template_fields: Sequence[str] = ("pipeline", "date")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#eef7e8"

    def __init__(self, *, date: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.date = date

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.batch.partitions import score_date
        from include.ct.batch.scoring import NoChampionError, resolve_challenger, resolve_champion
        from include.ct.registry.registry import model_version_url

        config = self.load_config()
        kind, reason = trigger_of(context)
        self.log.info("Run triggered by %s: %s", kind, reason)
        if announced_champions(context) == []:
            raise AirflowSkipException(
                "The champion did not change: the champion Asset event that started this run names "
                "no new version (its deploy staged a challenger for online validation instead)"
            )
        requested = str(self.date or "").strip()
        day = score_date(
            None if requested in ("", "None") else requested,
            context.get("data_interval_start"),
            context.get("data_interval_end"),
            context["dag_run"].run_after,
        )
        try:
            champion = resolve_champion(config)
        except NoChampionError as exc:
            raise AirflowSkipException(str(exc)) from exc
        set_link(self, MlflowModelVersionLink, model_version_url(champion.name, champion.version))
        challenger = resolve_challenger(config) if config.batch.dual_scores else None
        self.log.info(
            "Scoring %s with %s v%s%s",
            day,
            champion.name,
            champion.version,
            f" and staged challenger v{challenger.version} (dual scoring)" if challenger else "",
        )
        return {
            "day": day.isoformat(),
            "champion": champion.to_dict(),
            "challenger": challenger.to_dict() if challenger else None,
            "trigger": {"kind": kind, "reason": reason},
        }


class LocateBatchOperator(BatchPipelineOperator):
    """Find the day's input (its date folder, or its SQL window landed as Parquet) and hash it.

    A missing input is waited for up to ``batch.input_wait_minutes``, deferred between looks;
    then the task skips with the reason.

    :param resolved: the resolve task's result (``resolve.output``): the day and the version.
    """

    template_fields: Sequence[str] = ("pipeline", "resolved")
    ui_color = "#e8f4fd"

    def __init__(self, *, resolved: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved = resolved

    def execute(self, context: Context) -> dict[str, Any]:
        # counted from the run's start, so a retry of this task does not start the wait again
        started = context["dag_run"].start_date or datetime.now(UTC)
        deadline = started + timedelta(minutes=self.load_config().batch.input_wait_minutes)
        first = {"deadline": deadline.isoformat(), "last_look": False, "first_look": True}
        return self.look_for_input(context, first)

    def look_for_input(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Locate the day's input; while it is missing and ``event["deadline"]`` has not passed,
        defer to ``BatchInputTrigger`` and look again, so a late input is scored, not skipped."""
        from datetime import date

        from ct_airflow.triggers import BatchInputTrigger
        from include.ct.batch.inputs import NoInputError, locate_input

        config = self.load_config()
        engine = None
        if config.batch.source.type == "sql":
            hook: Any = BaseHook.get_hook(config.batch.source.conn_id)
            engine = hook.get_sqlalchemy_engine()
        deadline = datetime.fromisoformat(event["deadline"])
        try:
            batch = locate_input(config, date.fromisoformat(self.resolved["day"]), engine)
        except NoInputError as exc:
            now = datetime.now(UTC)
            if event.get("last_look") or now >= deadline:
                waited = config.batch.input_wait_minutes
                after = f" after waiting {waited:g} min" if waited else ""
                raise AirflowSkipException(f"Nothing to score{after}: {exc}") from exc
            poll = config.batch.input_poll_seconds
            self.log.info("No input yet (%s); waiting for it until %s", exc, event["deadline"])
            self.defer(
                trigger=BatchInputTrigger(
                    config.name,
                    self.resolved["day"],
                    event["deadline"],
                    poll,
                    hold_seconds=resume_hold_seconds(),
                ),
                method_name="look_for_input",
                # a triggerer that is down fails the task instead of keeping it deferred for ever
                timeout=deadline - now + timedelta(seconds=poll + 300),
            )
        if not event.get("first_look"):
            started = deadline - timedelta(minutes=config.batch.input_wait_minutes)
            batch.waited_seconds = max(0.0, round((datetime.now(UTC) - started).total_seconds(), 1))
            self.log.info("The day's input landed %.0f s into the run's wait", batch.waited_seconds)
        return batch.to_dict()


class ValidateBatchOperator(BatchPipelineOperator):
    """Run the pipeline's GX schema suite on the day's input, chunk by chunk, and check the key.

    A day that fails is quarantined whole with its report and the task fails (a retry cannot fix
    data); nothing of it is scored.

    :param batch: the locate task's result (``locate.output``): the day's files and data version.
    """

    template_fields: Sequence[str] = ("pipeline", "batch")
    operator_extra_links = (ValidationReportLink(),)
    ui_color = "#fdf1e8"

    def __init__(self, *, batch: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.configuration import conf

        from ct_airflow.reports import report_url
        from include.ct.batch.checks import report_id, validate_input
        from include.ct.batch.inputs import BatchInput
        from include.ct.data.validate import DataValidationError

        config = self.load_config()
        batch = BatchInput.from_dict(dict(self.batch))
        base = conf.get("api", "base_url", fallback="http://localhost:8080")
        set_link(self, ValidationReportLink, report_url(base, config.name, report_id(batch)))
        try:
            outcome = validate_input(config, batch)
        except DataValidationError as exc:
            raise AirflowFailException(str(exc)) from exc
        return {"data_version": outcome.data_version, "report": outcome.report_path}


class ScoreBatchOperator(BatchPipelineOperator):
    """Score the validated day with the resolved version and replace the day's output with it.

    In the worker on bounded chunks (``engine: in_process``), or as a Spark job submitted to the
    connection ``batch.spark.conn_id`` (``engine: spark``). With a staged challenger, both
    versions' predictions also go to the prediction log for the online decision.

    :param resolved: the resolve task's result: the day, the champion and any staged challenger.
    :param batch: the locate task's result: the day's files and data version.
    """

    template_fields: Sequence[str] = ("pipeline", "resolved", "batch")
    operator_extra_links = (MlflowModelVersionLink(),)
    ui_color = "#e8fdf5"

    def __init__(self, *, resolved: Upstream, batch: Upstream, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved = resolved
        self.batch = batch

    def execute(self, context: Context) -> dict[str, Any]:
        from include.ct.batch.inputs import BatchInput
        from include.ct.batch.scoring import ResolvedModel
        from include.ct.registry.registry import model_version_url

        config = self.load_config()
        champion = ResolvedModel(**self.resolved["champion"])
        set_link(self, MlflowModelVersionLink, model_version_url(champion.name, champion.version))
        batch = BatchInput.from_dict(dict(self.batch))
        run_id = context["dag_run"].run_id
        if config.batch.engine == "spark":
            result = self._score_on_spark(config, champion, batch, run_id)
        else:
            result = self._score_in_process(config, champion, batch, run_id)
        self.log.info(
            "Scored %s rows of %s with v%s (input %s) -> %s",
            result["rows"],
            result["day"],
            result["model_version"],
            result["input_version"],
            result["output"],
        )
        return result

    def _score_in_process(self, config: Any, champion: Any, batch: Any, run_id: str) -> dict[str, Any]:
        from include.ct.batch.scoring import ResolvedModel, load_model, score_day

        engine = None
        if config.batch.output.type == "sql":
            hook: Any = BaseHook.get_hook(config.batch.output.conn_id)
            engine = hook.get_sqlalchemy_engine()
        challenger = ResolvedModel(**self.resolved["challenger"]) if self.resolved.get("challenger") else None
        evidence = load_model(config, challenger) if challenger else None
        result = score_day(
            config, champion, batch, run_id, sql_engine=engine, evidence=evidence, evidence_model=challenger
        )
        return result.to_dict()

    def _score_on_spark(self, config: Any, champion: Any, batch: Any, run_id: str) -> dict[str, Any]:
        import json
        from datetime import date

        from include.ct.batch.partitions import work_dir
        from include.ct.batch.spark_job import write_request

        folder = work_dir(config, date.fromisoformat(batch.day))
        request = write_request(folder / "spark_request.json", champion, batch, run_id)
        Path(request["result"]).unlink(missing_ok=True)
        submit_spark_job(config, folder / "spark_request.json", name=f"{config.dag_id}_batch {batch.day}")
        return dict(json.loads(Path(request["result"]).read_text()))


def submit_spark_job(config: Any, request: Path, *, name: str) -> None:
    """``spark-submit`` the scoring job to ``batch.spark.conn_id`` through the Spark provider's hook.

    The job gets this worker's Python (``PYSPARK_PYTHON``), the library on ``PYTHONPATH`` and the
    locations of data and MLflow; on a cluster, install the project (its wheel) on the executors.
    """
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    import include.ct.batch.spark_job as job

    spark = config.batch.spark
    library_root = str(Path(job.__file__).resolve().parents[3])
    environment = {key: os.environ[key] for key in SPARK_JOB_ENVIRONMENT if key in os.environ}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [library_root, environment.get("PYTHONPATH")]))
    environment["PYSPARK_PYTHON"] = os.environ.get("PYSPARK_PYTHON", sys.executable)
    # spark-submit is installed beside this interpreter (PySpark's scripts)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hook = SparkSubmitHook(
        conf=dict(spark.conf),
        conn_id=spark.conn_id,
        executor_memory=spark.executor_memory,
        num_executors=spark.num_executors,
        name=name,
        application_args=["--pipeline", config.name, "--request", str(request)],
        env_vars=environment,
    )
    hook.submit(application=job.__file__)
