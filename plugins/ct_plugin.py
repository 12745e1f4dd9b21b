"""Registers the continuous-training extra links, report viewer and run-note listener with Airflow."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ct_airflow import run_notes
from ct_airflow.links import MlflowModelVersionLink, MlflowRunLink, ValidationReportLink
from ct_airflow.reports import URL_PREFIX, app


class ContinuousTrainingPlugin(AirflowPlugin):
    """Extra links, report pages and run notes (why each run started) for the ct_<name> DAGs."""

    name = "continuous_training"
    operator_extra_links = [MlflowRunLink(), MlflowModelVersionLink(), ValidationReportLink()]
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "CT validation reports"}]
    listeners = [run_notes]
