"""``ct_housekeeping``: daily retention for every pipeline, then ``airflow db clean``.

Only wiring lives here; the rules are in ``include.ct.housekeeping`` and each pipeline's
``retention:`` section.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, task

from ct_airflow.operators.housekeeping import AirflowDbCleanOperator, HousekeepingOperator
from include.ct.config import PipelineConfig, pipeline_configs

HOUSEKEEPING_DOC = """
### Housekeeping

Daily, per pipeline: compact the prediction log into one file per hour, delete log days older
than `retention.prediction_log_days`, prune snapshots no training window reaches, expire
reports, Data Docs, held-out splits and quarantined files, delete registered versions beyond the
newest `retention.model_versions_keep` (their runs go to MLflow's deleted stage) and purge runs
deleted long enough ago (`mlflow gc`). The champion, its rollback target, a staged challenger and
the data they were trained on always stay. Then `airflow db clean` removes metadata older than
the longest `retention.airflow_db_days`.

Trigger with **dry_run** to list what would go without changing anything. Every removal is in the
task log with its reason; each pipeline's task links to an MLflow run with bytes freed, files
compacted and the full list. Pipelines: {pipelines}.
"""


@task(task_id="summary", doc_md="One line per pipeline for the run note.")
def summarize(results: list[dict[str, object]]) -> dict[str, str]:
    """The run note's last line: what every pipeline's pass did."""
    return {"summary": " | ".join(f"{r['pipeline']}: {r['summary']}" for r in results)}


def build_housekeeping_dag(configs: list[PipelineConfig]) -> DAG:
    owners = sorted({config.owner for config in configs}) or ["mlops"]
    with DAG(
        dag_id="ct_housekeeping",
        description="Retention, compaction and metadata cleanup for every pipeline",
        schedule="@daily",
        catchup=False,
        max_active_runs=1,
        tags=["continuous-training", "housekeeping"],
        default_args={"owner": ",".join(owners), "retries": 1, "retry_delay": timedelta(minutes=5)},
        params={
            "dry_run": Param(
                False,
                type="boolean",
                title="Dry run",
                description="List what would be compacted and removed; change nothing.",
            )
        },
        doc_md=HOUSEKEEPING_DOC.format(pipelines=", ".join(f"`{c.name}`" for c in configs) or "none"),
    ) as dag:
        passes = [
            HousekeepingOperator(
                task_id=f"housekeep_{config.name}",
                pipeline=config.name,
                dry_run="{{ params.dry_run }}",
                doc_md=f"Retention of `{config.name}`: compaction, expiry, pruning, registry cleanup.",
            )
            for config in configs
        ]
        clean = AirflowDbCleanOperator(
            task_id="airflow_db_clean",
            keep_days=max((c.retention.airflow_db_days for c in configs), default=90),
            dry_run="{{ params.dry_run }}",
            doc_md="`airflow db clean` of metadata older than the longest retention.airflow_db_days.",
        )
        summarize([operator.output for operator in passes])
        passes >> clean  # type: ignore[operator]
    return dag


# one pass per pipeline name: a config in CT_PIPELINES_DIR replaces a bundled one of the same name
ct_housekeeping = build_housekeeping_dag(list(pipeline_configs().values()))
