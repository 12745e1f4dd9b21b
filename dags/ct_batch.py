"""Batch-scoring DAGs: one ``ct_<name>_batch`` per pipeline with a ``batch:`` section.

Each run scores one day's table with the champion resolved when the run starts, into a
partition it replaces whole. Only wiring lives here; the work is in ``include.ct.batch``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronDataIntervalTimetable, Param

from ct_airflow.operators.batch import (
    LocateBatchOperator,
    ResolveModelOperator,
    ScoreBatchOperator,
    ValidateBatchOperator,
)
from include.ct.config import PipelineConfig, effective_pipeline_configs

BATCH_DOC = """
### Batch scoring of `{model}`

Each run scores **one day** with the `champion` version resolved when it starts (a promotion
during the run takes effect at the next one): the day's input ({source}) is checked by the
pipeline's Great Expectations schema suite, chunk by chunk, with the key `{key}` unique across
the day; a day that fails is quarantined whole with its report and nothing of it is scored.
The scores ({output}) replace the day's output whole: a re-run, a retry or a re-score by a new
champion never duplicates a row. Every row carries the key, the model version, its MLflow run,
the input's data version and this run's id.

* Engine: **{engine}**. Schedule: {schedule}{on_champion}.
* Trigger by hand with a `date` to (re)score that day.{dual}
"""


def schedule_of(config: PipelineConfig) -> Any:
    """Daily (or the configured cron) intervals, or'ed with the champion Asset when configured."""
    spec = config.batch
    assert spec is not None
    timetable = CronDataIntervalTimetable(spec.schedule, timezone="UTC") if spec.schedule else None
    if not spec.on_champion:
        return timetable
    champion = Asset(name=config.champion_asset)
    return [champion] if timetable is None else AssetOrTimeSchedule(timetable=timetable, assets=champion)


def build_batch_dag(config: PipelineConfig) -> DAG:
    """Wire resolve -> locate -> validate -> score for one pipeline."""
    spec = config.batch
    assert spec is not None
    source = (
        f"rows of `{spec.source.conn_id}` for the day"
        if spec.source.type == "sql"
        else f"files in `{spec.source.path or f'batch/{config.name}'}/date=YYYY-MM-DD/`"
    )
    output = (
        f"table `{spec.output.table}` on `{spec.output.conn_id}`, the day's rows replaced in one transaction"
        if spec.output.type == "sql"
        else f"Parquet under `{spec.output.path or f'scores/{config.name}'}/date=YYYY-MM-DD/`"
    )
    with DAG(
        dag_id=f"{config.dag_id}_batch",
        description=f"Batch scoring with the champion of {config.registered_model_name}",
        schedule=schedule_of(config),
        catchup=False,
        max_active_runs=1,
        tags=["continuous-training", "batch-scoring", *config.tags],
        default_args={"owner": config.owner, "retries": 1, "retry_delay": timedelta(seconds=30)},
        params={
            "date": Param(
                None,
                type=["null", "string"],
                title="Day to score",
                description="YYYY-MM-DD; empty: the run's interval, or the last complete day.",
                pattern=r"^\d{4}-\d{2}-\d{2}$",
            ),
        },
        doc_md=BATCH_DOC.format(
            model=config.registered_model_name,
            source=source,
            key=", ".join(spec.key),
            output=output,
            engine=spec.engine,
            schedule=spec.schedule or "none",
            on_champion=", and a run for the last day whenever a new champion is promoted"
            if spec.on_champion
            else "",
            dual=" While a challenger is under online validation, it scores each day too and both "
            "versions' predictions go to the prediction log, paired on the key, for the online decision."
            if spec.dual_scores
            else "",
        ),
    ) as dag:
        resolve = ResolveModelOperator(
            task_id="resolve",
            pipeline=config.name,
            date="{{ params.date }}",
            doc_md="Choose the day and resolve `champion` to a version, once for the run; without a "
            "champion yet, or when the champion Asset event that started the run names no new "
            "version, skip with the reason.",
        )
        locate = LocateBatchOperator(
            task_id="locate",
            pipeline=config.name,
            resolved=resolve.output,
            doc_md="Find the day's input (or land its SQL window as Parquet) and hash it: the "
            "input's data version. No input: wait for it up to `batch.input_wait_minutes` (deferred "
            "between looks), then skip with the reason.",
        )
        validate = ValidateBatchOperator(
            task_id="validate",
            pipeline=config.name,
            batch=locate.output,
            doc_md="Great Expectations schema suite on every chunk, key unique across the day. A "
            "failure quarantines the day with its report and fails the task.",
        )
        score = ScoreBatchOperator(
            task_id="score",
            pipeline=config.name,
            resolved=resolve.output,
            batch=locate.output,
            doc_md="Score the day with the resolved version and replace its output whole.",
        )
        resolve >> locate >> validate >> score
    return dag


for _path, _loaded in effective_pipeline_configs():
    if isinstance(_loaded, PipelineConfig) and _loaded.batch is not None:
        globals()[f"{_loaded.dag_id}_batch"] = build_batch_dag(_loaded)
