"""A small FastAPI app, mounted in the Airflow API server, that shows validation reports.

Reports hold failing values from the data, so every page needs Airflow's login and read access
to the pipeline's DAG (``access``).
"""

from __future__ import annotations

import re

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from ct_airflow.access import ReadablePipeline, send_browsers_to_login
from include.ct.storage import pipeline_paths

URL_PREFIX = "/ct-reports"
app = FastAPI(title="Continuous-training validation reports")
send_browsers_to_login(app)
_SAFE_VERSION = re.compile(r"[a-z0-9_\-.]+")


def report_url(base_url: str, pipeline: str, data_version: str) -> str:
    """Address of a data version's report through the Airflow API server."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/{pipeline}/{data_version}/"


@app.get("/{pipeline}/{data_version}/")
def validation_report(config: ReadablePipeline, data_version: str) -> FileResponse:
    """The HTML validation report of one data version of one pipeline."""
    return report_file(config, data_version, "report.html")


@app.get("/{pipeline}/{data_version}/{path:path}")
def report_file(config: ReadablePipeline, data_version: str, path: str) -> FileResponse:
    """A file of the report folder (the GX Data Docs pages), never outside it."""
    if not _SAFE_VERSION.fullmatch(data_version) or ".." in data_version:
        raise HTTPException(404, "no such report")
    folder = (pipeline_paths(config).reports / data_version).resolve()
    target = (folder / path).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise HTTPException(404, f"no report file {path!r} for {config.name} data version {data_version}")
    return FileResponse(target)
