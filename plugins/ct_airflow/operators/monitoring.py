"""The monitoring DAG's check: drift and live quality, and a retrain when they say so."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from ct_airflow.links import MlflowRunLink, set_link
from ct_airflow.operators.base import PipelineOperator, run_lineage


class MonitorOperator(PipelineOperator):
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
        lineage = run_lineage(config.name, context, "")
        url = record(config, report, lineage) if report.champion else None
        set_link(self, MlflowRunLink, url)
        return report.to_dict()
