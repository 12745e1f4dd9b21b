"""The continuous-training view of the Airflow UI: champions, gate decisions and drift per
pipeline, read from MLflow. Served by the API server behind Airflow's login and linked from the
UI's Browse menu; each pipeline is shown only to users who may read its DAG.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from ct_airflow.access import ReadablePipeline, User, can_read_dag, send_browsers_to_login
from include.ct.config import PipelineConfig, pipeline_configs
from include.ct.registry import history_page
from include.ct.registry.history import PipelineHistory, pipeline_history

log = logging.getLogger(__name__)

URL_PREFIX = "/continuous-training"
# The Airflow UI's navigation links to this page (a plugin external view). It has no url_route on
# purpose: Airflow embeds routed views in an iframe sandboxed without popups or top navigation,
# where no link to an Airflow run or into MLflow could be followed; as its own tab every link works.
EXTERNAL_VIEW = {
    "name": "Continuous training",
    "href": URL_PREFIX.lstrip("/") + "/",
    "destination": "nav",
    "category": "browse",
}
app = FastAPI(title="Continuous-training view")
send_browsers_to_login(app)


def _readable_configs(user: Any) -> list[PipelineConfig]:
    return [config for config in pipeline_configs().values() if can_read_dag(user, config.dag_id)]


@app.get("/", response_class=HTMLResponse)
def view(request: Request, user: User, pipeline: str | None = None) -> HTMLResponse:
    """Every pipeline the user may read (or only ``?pipeline=``), newest events first."""
    histories: list[PipelineHistory] = []
    errors: dict[str, str] = {}
    for config in _readable_configs(user):
        if pipeline and config.name != pipeline:
            continue
        try:
            histories.append(pipeline_history(config))
        except Exception as exc:  # noqa: BLE001 - one unreachable registry must not hide the others
            log.warning("history of %s: %s", config.name, exc)
            errors[config.name] = f"{type(exc).__name__}: {exc}"[:500]
    airflow_base = str(request.base_url).rstrip("/").removesuffix(URL_PREFIX)
    return HTMLResponse(history_page.render(histories, airflow_base=airflow_base, errors=errors))


@app.get("/api/pipelines/{pipeline}")
def history(config: ReadablePipeline) -> dict[str, Any]:
    """The same history as JSON, for scripts and tests."""
    return asdict(pipeline_history(config))
