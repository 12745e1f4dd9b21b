"""A small FastAPI app, mounted in the Airflow API server, that shows validation reports."""

from __future__ import annotations

import re

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from include.ct.config import find_pipeline_config
from include.ct.storage import pipeline_paths

URL_PREFIX = "/ct-reports"
app = FastAPI(title="Continuous-training validation reports")
_SAFE = re.compile(r"[a-z0-9_\-.]+")


def report_url(base_url: str, pipeline: str, data_version: str) -> str:
    """Address of a data version's report through the Airflow API server."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/{pipeline}/{data_version}/"


@app.get("/{pipeline}/{data_version}/")
def validation_report(pipeline: str, data_version: str) -> FileResponse:
    """The HTML validation report of one data version of one pipeline."""
    return report_file(pipeline, data_version, "report.html")


@app.get("/{pipeline}/{data_version}/{path:path}")
def report_file(pipeline: str, data_version: str, path: str) -> FileResponse:
    """A file of the report folder (the GX Data Docs pages), never outside it."""
    if not (_SAFE.fullmatch(pipeline) and _SAFE.fullmatch(data_version)) or ".." in data_version:
        raise HTTPException(404, "no such report")
    try:
        config = find_pipeline_config(pipeline)
    except (KeyError, ValueError) as exc:
        raise HTTPException(404, f"no pipeline '{pipeline}'") from exc
    folder = (pipeline_paths(config).reports / data_version).resolve()
    target = (folder / path).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise HTTPException(404, f"no report file {path!r} for {pipeline} data version {data_version}")
    return FileResponse(target)
