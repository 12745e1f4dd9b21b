"""DAG factory: one continuous-training DAG ``ct_<name>`` per pipeline YAML.

Only wiring lives here; the work is in ``include.ct`` behind the operators of ``ct_airflow``.
A broken config yields an import error naming its file and key; the other DAGs still load.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
)

from ct_airflow.approval import DeployApprovalOperator
from ct_airflow.operators import (
    DeployModelOperator,
    EvaluateChallengerOperator,
    ExtractBatchesOperator,
    RegisterModelOperator,
    RollbackChampionOperator,
    TrainChallengerOperator,
    ValidateDataOperator,
)
from ct_airflow.run_notes import MANUAL_REASON
from ct_airflow.runtime import container_operator
from ct_airflow.triggers import NewBatchTrigger, NewRowsTrigger
from include.ct.config import ConfigError, PipelineConfig, effective_pipeline_configs, pipeline_name


def service_retries(config: PipelineConfig) -> dict[str, Any]:
    """Retry arguments of the tasks that train or call MLflow, from ``retries`` in the config."""
    return {
        "retries": config.retries.count,
        "retry_delay": timedelta(seconds=config.retries.delay_seconds),
        "retry_exponential_backoff": config.retries.exponential_backoff,
        "max_retry_delay": timedelta(seconds=config.retries.max_delay_seconds),
    }


def heavy_step(
    operator: type[Any], task_id: str, config: PipelineConfig, upstream: Any, **kwargs: Any
) -> Any:
    """The task of a heavy step after ``upstream``; with ``runtime: docker``, request -> container
    -> result tasks. Returns the task whose output is the step's result (the same XCom either way).
    """
    if config.runtime.type == "process":
        step = operator(task_id=task_id, **kwargs)
        upstream >> step
        return step
    request = operator(task_id=f"{task_id}_request", phase="request", **kwargs)
    upstream >> request
    exchange = f"ti.xcom_pull(task_ids='{request.task_id}')"
    container = container_operator(
        f"{task_id}_container",
        config,
        operator.step,
        request_path="{{ " + exchange + "['request'] }}",
        result_path="{{ " + exchange + "['result'] }}",
        doc_md=f"`python -m include.ct.steps {operator.step}` in a container of `{config.runtime.image}`.",
        **service_retries(config),
    )
    result = operator(task_id=task_id, phase="collect", exchange=request.output, **kwargs)
    request >> container >> result
    return result


DAG_DOC = """
### Continuous training of `{model}`

{description}

**Flow:** extract new batches from `{landing}` → validate with the Great Expectations suite
built from `{config_file}` → train a scikit-learn Pipeline (MLflow run) → evaluate challenger
against the serving `champion` on the same held-out rows (the gate: a challenger not promoted
stops the run here) → register (and prove it loads in the prediction service beside the
champion){approval} → deploy ({strategy}): move the
`champion` alias, make the prediction service serve it, smoke-test it over HTTP, check its
latency, and roll back on any failure.

* Primary metric **{metric}**; floor {threshold}, margin over the champion {margin},
  max slice drop {slice_drop} on slices {slices}.
* Trigger it by hand with **force** to retrain without new data, or override the margin.
* Bad batches are moved to the quarantine folder with an HTML/JSON report (see the
  *Validation report* link on the validate task).
"""


DIRECT_DEPLOY = (
    "Move `champion` to the new version, have the prediction service (connection `ct_serving`) "
    "reload and report it, compare its HTTP answers on held-out rows with the offline predictions "
    "and check p95 latency under {p95} ms. Any failure moves the alias back and records the reason "
    "on the version."
)
ONLINE_WAIT = (
    " The task then defers to the triggerer (no worker slot held) until the online decision, read "
    "every {online.poll_seconds:g} s: the challenger's live {metric} against the champion's on the "
    "same requests once their labels arrive (at least {online.min_labels}), judged with an "
    "always-valid interval, so reading it repeatedly is safe. Promote when the challenger is surely "
    "no worse than {online.tolerance:g}; roll back (tag `rejected_online`, the task fails, the "
    "champion never changed) when it is surely worse, when its error rate or p99 latency breaks "
    "the budget, or after {online.max_wait_hours:g} h without a conclusion. Promotion then runs the "
    "direct checks: " + DIRECT_DEPLOY
)
DEPLOY_DOC = {
    "direct": DIRECT_DEPLOY,
    "shadow": "Stage the new version as `challenger`: the prediction service loads it beside the "
    "champion and scores {share:.0%} of live requests with it off the request path; clients only "
    "ever get the champion's answer." + ONLINE_WAIT,
    "canary": "Stage the new version as `challenger`: the prediction service answers a share of "
    "requests with it ({steps}; sticky per client id), the next step after enough healthy "
    "requests, while the champion scores those requests beside it." + ONLINE_WAIT,
}


def schedule_of(config: PipelineConfig) -> Any:
    """The config's time schedule, or'ed with an Asset fed by the landing-zone watcher.

    SQL sources get cron data intervals (a backfill extracts exactly its intervals); file sources
    a plain cron trigger. The watcher (new files, or new rows of the SQL source) runs in the
    triggerer and holds no worker slot while waiting.
    """
    timetable: Any = config.schedule
    if config.schedule and not config.schedule.startswith("@once") and config.schedule != "@continuous":
        cron = CronDataIntervalTimetable if config.source.type == "sql" else CronTriggerTimetable
        timetable = cron(config.schedule, timezone="UTC")
    if not config.source.watch:
        return timetable
    watcher: Any = (
        NewRowsTrigger(pipeline=config.name, poll_seconds=config.source.poll_seconds)
        if config.source.type == "sql"
        else NewBatchTrigger(
            pipeline=config.name,
            poll_seconds=config.source.poll_seconds,
            settle_seconds=config.source.settle_seconds,
        )
    )
    new_data = Asset(
        name=config.new_data_asset,
        watchers=[AssetWatcher(name=f"{config.dag_id}_data_watcher", trigger=watcher)],
    )
    if timetable is None:
        return [new_data]
    return AssetOrTimeSchedule(timetable=timetable, assets=new_data)


def build_dag(config: PipelineConfig, config_file: Path) -> DAG:
    """Wire the CT tasks for one pipeline."""
    params = {
        "force": Param(
            False,
            type="boolean",
            title="Force a run without new data",
            description="Retrain on the accepted data even if no new batch arrived.",
        ),
        "min_improvement": Param(
            None,
            type=["null", "number"],
            title="Promotion margin override",
            description=(
                f"How much better than the champion the challenger must be, in {config.metric} "
                f"units. Empty uses the config's {config.promotion.min_improvement}."
            ),
        ),
        "reason": Param(
            MANUAL_REASON,
            type="string",
            title="Reason",
            description="Why you trigger this run; recorded on the MLflow run and the run note.",
            minLength=1,
            maxLength=500,
        ),
    }
    with DAG(
        dag_id=config.dag_id,
        description=config.description or f"Continuous training of {config.registered_model_name}",
        schedule=schedule_of(config),
        catchup=config.catchup,
        max_active_runs=1,
        tags=["continuous-training", config.task, *config.tags],
        params=params,
        default_args={"owner": config.owner, "retries": 1, "retry_delay": timedelta(seconds=30)},
        doc_md=DAG_DOC.format(
            model=config.registered_model_name,
            description=config.description or "",
            landing=config.landing_path,
            config_file=config_file.name,
            metric=config.metric,
            threshold=config.promotion.threshold,
            margin=config.promotion.min_improvement,
            slice_drop=config.promotion.max_slice_drop,
            slices=config.slices or "none",
            approval=" → a person approves in the UI" if config.deploy.approval == "manual" else "",
            strategy={
                "direct": "direct",
                "shadow": "after a shadow period judged on live labels",
                "canary": "after canary steps judged on live labels",
            }[config.deploy.strategy],
        ),
    ) as dag:
        extract = ExtractBatchesOperator(
            task_id="extract",
            pipeline=config.name,
            force="{{ params.force }}",
            doc_md="Snapshot every batch waiting in the landing zone to immutable Parquet; the "
            "content hash is the data version. Nothing new and not forced: the run is skipped.",
        )
        validate = ValidateDataOperator(
            task_id="validate",
            pipeline=config.name,
            snapshot=extract.output,
            doc_md="Great Expectations suite from the config on every batch. Schema skew stops "
            "the run and quarantines the batch with its report; value skew (PSI against the "
            "champion's training data) is recorded.",
        )
        train = heavy_step(
            TrainChallengerOperator,
            "train",
            config,
            upstream=validate,
            pipeline=config.name,
            snapshot=extract.output,
            doc_md="Fit the scikit-learn Pipeline on the accepted data window and log it to "
            "MLflow with params, metrics, signature, datasets, plots and lineage tags.",
            **service_retries(config),
        )
        evaluate = heavy_step(
            EvaluateChallengerOperator,
            "evaluate",
            config,
            upstream=train,
            pipeline=config.name,
            trained=train.output,
            min_improvement="{{ params.min_improvement }}",
            doc_md="Score challenger and champion on the same held-out rows, overall and per "
            "slice, and record the promotion decision with its reasons on the MLflow run. This is "
            "the gate: unless the challenger is promoted, registration and deployment are skipped "
            "and the champion is untouched.",
            **service_retries(config),
        )
        register = RegisterModelOperator(
            task_id="register",
            pipeline=config.name,
            trained=train.output,
            decision=evaluate.output,
            doc_md="Register the model version (once, even on retry) and prove it can serve: the "
            "prediction service (connection `ct_serving`) loads it beside the champion with no "
            "traffic (alias `challenger`), so deploying it is a swap; where no service answers or "
            "no champion serves yet, a fresh process of the serving environment loads it and "
            "predicts held-out rows. A model that cannot serve is tagged `rejected_infra` and "
            "never becomes champion.",
            **service_retries(config),
        )
        deploy = DeployModelOperator(
            task_id="deploy",
            pipeline=config.name,
            registered=register.output,
            trained=train.output,
            decision=evaluate.output,
            doc_md=DEPLOY_DOC[config.deploy.strategy].format(
                p95=config.deploy.latency_p95_ms,
                share=config.deploy.shadow_share,
                steps=" → ".join(f"{step:.0%}" for step in config.deploy.canary_steps),
                online=config.deploy.online,
                metric=config.metric,
            ),
            outlets=[Asset(name=config.champion_asset)],  # a new champion: batch scoring may re-score
        )
        extract >> validate
        evaluate >> register
        if config.deploy.approval == "manual":
            approve = DeployApprovalOperator(
                task_id="approve",
                pipeline=config.name,
                registered=register.output,
                subject=f"Deploy {config.registered_model_name} version "
                "{{ ti.xcom_pull(task_ids='register')['version'] }} as champion?",
                response_timeout=timedelta(hours=config.deploy.approval_timeout_hours),
                doc_md="A person approves the deployment in the Airflow UI (Required actions). "
                "Reject, or no answer in time, leaves the champion unchanged; the answer is tagged "
                "on the model version.",
            )
            register >> approve >> deploy
        else:
            register >> deploy
    return dag


ROLLBACK_DOC = """
### Roll back the `champion` of `{model}`

Moves the `champion` alias to the chosen version (empty: the version the current champion
replaced), records the reason on the version rolled away from, and waits until the prediction
service serves the restored version. Trigger it from the UI; it never runs on a schedule.
"""


def build_rollback_dag(config: PipelineConfig) -> DAG:
    """``ct_<name>_rollback``: a manual, audited move of the champion back to an earlier version."""
    with DAG(
        dag_id=f"{config.dag_id}_rollback",
        description=f"Manually roll back the champion of {config.registered_model_name}",
        schedule=None,
        catchup=False,
        max_active_runs=1,
        tags=["continuous-training", "rollback", *config.tags],
        default_args={"owner": config.owner, "retries": 0},
        doc_md=ROLLBACK_DOC.format(model=config.registered_model_name),
        params={
            "version": Param(
                "",
                type="string",
                title="Version to restore",
                description="Registered model version to make champion again; empty restores the "
                "version the current champion replaced.",
                pattern="^[0-9]*$",
            ),
            "reason": Param(
                "",
                type="string",
                title="Reason",
                description="Why you roll back; recorded on the model version.",
                minLength=1,
                maxLength=500,
            ),
        },
    ) as dag:
        RollbackChampionOperator(
            task_id="rollback",
            pipeline=config.name,
            version="{{ params.version }}",
            reason="{{ params.reason }}",
            doc_md="Move the alias, tag the version rolled away from, and wait for the service.",
            outlets=[Asset(name=config.champion_asset)],
        )
    return dag


class BrokenPipelineDag(DAG):
    """Stands in for a pipeline whose YAML is invalid, so only that pipeline fails to import."""

    def validate(self) -> None:  # type: ignore[override]
        raise _CONFIG_ERRORS[self.dag_id]


_CONFIG_ERRORS: dict[str, ConfigError] = {}

for _path, _loaded in effective_pipeline_configs():
    if isinstance(_loaded, ConfigError):
        _dag_id = f"ct_{pipeline_name(_path, _loaded)}"
        _CONFIG_ERRORS[_dag_id] = _loaded
        globals()[_dag_id] = BrokenPipelineDag(dag_id=_dag_id, schedule=None)
    else:
        globals()[_loaded.dag_id] = build_dag(_loaded, _path)
        globals()[f"{_loaded.dag_id}_rollback"] = build_rollback_dag(_loaded)
