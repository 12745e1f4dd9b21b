"""Monitoring DAGs: one ``ct_<name>_monitor`` per pipeline, hourly by default.

Each measures drift of recent traffic and new batches against the champion's training data and
live quality from late labels; past a threshold (and outside the cooldown) it starts ``ct_<name>``
with the reason in the run conf and note. Only wiring lives here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG

from ct_airflow.operators import MonitorOperator
from ct_airflow.retrain import RetrainTriggerOperator
from include.ct.config import PipelineConfig, effective_pipeline_configs

MONITOR_DOC = """
### Monitoring of `{model}`

Every run compares the last {window} h of prediction-log traffic and the batches waiting in the
landing zone with the serving champion's training reference ({test} for numeric features, PSI
for categories; thresholds PSI {psi} / KS {ks}), and joins late labels from `{labels}` to
logged predictions (on `prediction_id`) to measure live **{metric}**. Drift, or live quality more
than {drop} below the offline figure, triggers `{dag}` with the reason; a cooldown of
{cooldown} h stops retraining storms. The drift report (HTML and metrics) is on the MLflow run
linked from the *assess* task.
"""


def _should_retrain(report: dict[str, Any]) -> bool:
    """Short-circuit: continue to the trigger only if the monitor decided to retrain."""
    print(f"Monitor decision: {'retrain' if report['retrain'] else 'no retraining'} - {report['reason']}")
    return bool(report["retrain"])


def build_monitor_dag(config: PipelineConfig) -> DAG:
    monitoring = config.monitoring
    with DAG(
        dag_id=f"{config.dag_id}_monitor",
        description=f"Drift and live-quality monitoring of {config.registered_model_name}",
        schedule=monitoring.schedule,
        catchup=False,
        max_active_runs=1,
        tags=["continuous-training", "monitoring", *config.tags],
        default_args={"owner": config.owner, "retries": 1, "retry_delay": timedelta(minutes=1)},
        doc_md=MONITOR_DOC.format(
            model=config.registered_model_name,
            window=monitoring.window_hours,
            test=monitoring.numeric_test.upper(),
            psi=monitoring.psi_threshold,
            ks=monitoring.ks_threshold,
            labels=monitoring.labels_path or f"labels/{config.name}",
            metric=config.metric,
            drop=monitoring.max_metric_drop,
            dag=config.dag_id,
            cooldown=monitoring.cooldown_hours,
        ),
    ) as dag:
        assess = MonitorOperator(
            task_id="assess",
            pipeline=config.name,
            doc_md="Drift per feature of traffic and new batches, live quality from labels, and the "
            "retrain decision (with cooldown); logs the drift report to MLflow.",
        )
        gate = ShortCircuitOperator(
            task_id="should_retrain",
            python_callable=_should_retrain,
            op_args=[assess.output],
            doc_md="Continue only when drift or decay crossed its threshold outside the cooldown.",
        )
        retrain = RetrainTriggerOperator(
            task_id="retrain",
            trigger_dag_id=config.dag_id,
            conf={
                "trigger": "{{ ti.xcom_pull(task_ids='assess')['trigger'] }}",
                "reason": "{{ ti.xcom_pull(task_ids='assess')['reason'] }}",
                "force": True,
            },
            note="Trigger: {{ ti.xcom_pull(task_ids='assess')['trigger'] }}. "
            "{{ ti.xcom_pull(task_ids='assess')['reason'] }}",
            wait_for_completion=False,
            doc_md=f"Start `{config.dag_id}` (forced: drift needs no new batch) with the reason.",
        )
        assess >> gate >> retrain
    return dag


for _path, _loaded in effective_pipeline_configs():
    if isinstance(_loaded, PipelineConfig) and _loaded.monitoring.schedule is not None:
        globals()[f"{_loaded.dag_id}_monitor"] = build_monitor_dag(_loaded)
