"""The validation-report viewer mounted in the Airflow API server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ct_airflow.reports import app, report_url
from include.ct.config import PipelineConfig
from include.ct.data.extract import extract
from include.ct.data.validate import validate_snapshot
from tools import datagen


@pytest.fixture
def data_version(churn: PipelineConfig) -> str:
    datagen.write_batch(churn, rows=200)
    snapshot = extract(churn)
    validate_snapshot(churn, snapshot)
    return snapshot.data_version


def test_serves_report_and_data_docs(data_version: str) -> None:
    client = TestClient(app)
    url = report_url("http://testserver", "churn", data_version).removeprefix("http://testserver/ct-reports")
    page = client.get(url)
    assert page.status_code == 200
    assert "Validation of churn" in page.text
    assert client.get(f"{url}data_docs/index.html").status_code == 200


def test_refuses_unknown_and_escaping_paths(data_version: str) -> None:
    client = TestClient(app)
    assert client.get("/nope/abc/").status_code == 404
    assert client.get(f"/churn/{data_version}/../../accepted/{data_version}.json").status_code == 404
    assert client.get(f"/churn/{data_version}/%2e%2e/%2e%2e/x").status_code == 404
