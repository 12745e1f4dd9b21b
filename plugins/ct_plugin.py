"""Registers the continuous-training extra links, report viewer, CT view and run notes with Airflow."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ct_airflow import ct_view, run_notes
from ct_airflow.links import MlflowModelVersionLink, MlflowRunLink, ValidationReportLink
from ct_airflow.reports import URL_PREFIX, app


class ContinuousTrainingPlugin(AirflowPlugin):
    """Extra links, report pages, the CT view and run notes (why each run started) for the ct_<name> DAGs."""

    name = "continuous_training"
    operator_extra_links = [MlflowRunLink(), MlflowModelVersionLink(), ValidationReportLink()]
    fastapi_apps = [
        {"app": app, "url_prefix": URL_PREFIX, "name": "CT validation reports"},
        {"app": ct_view.app, "url_prefix": ct_view.URL_PREFIX, "name": "CT view"},
    ]
    external_views = [ct_view.EXTERNAL_VIEW]
    listeners = [run_notes]
