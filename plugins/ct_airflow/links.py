"""Extra links from a task to what it produced: the MLflow run, model version or data report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

MLFLOW_RUN_URL = "ct_mlflow_run_url"
MODEL_VERSION_URL = "ct_model_version_url"
VALIDATION_REPORT_URL = "ct_validation_report_url"


def _xcom_link(ti_key: Any, key: str) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(ti_key=ti_key, key=key)
    return str(value) if value else ""


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run the task trained or evaluated."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return _xcom_link(ti_key, MLFLOW_RUN_URL)


class MlflowModelVersionLink(BaseOperatorLink):
    """The registered model version the task promoted."""

    name = "MLflow model version"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return _xcom_link(ti_key, MODEL_VERSION_URL)


class ValidationReportLink(BaseOperatorLink):
    """The human-readable validation report of the task's data version."""

    name = "Validation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return _xcom_link(ti_key, VALIDATION_REPORT_URL)
