"""The validation-report viewer mounted in the Airflow API server (auth faked: see
tests/integration/test_plugin_auth.py for the real API server's login and permissions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient

from ct_airflow import access
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


@pytest.fixture
def readable_dags(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """A logged-in user who may read the DAGs in the returned set."""
    allowed: set[str] = {"ct_churn"}
    monkeypatch.setattr(access, "can_read_dag", lambda user, dag_id: dag_id in allowed)
    app.dependency_overrides[get_user] = object  # any user object: the permission check is faked
    yield allowed
    app.dependency_overrides.clear()


def test_serves_report_and_data_docs(data_version: str, readable_dags: set[str]) -> None:
    client = TestClient(app)
    url = report_url("http://testserver", "churn", data_version).removeprefix("http://testserver/ct-reports")
    page = client.get(url)
    assert page.status_code == 200
    assert "Validation of churn" in page.text
    assert client.get(f"{url}data_docs/index.html").status_code == 200


def test_refuses_unknown_and_escaping_paths(data_version: str, readable_dags: set[str]) -> None:
    client = TestClient(app)
    assert client.get("/nope/abc/").status_code == 404
    assert client.get(f"/churn/{data_version}/../../accepted/{data_version}.json").status_code == 404
    assert client.get(f"/churn/{data_version}/%2e%2e/%2e%2e/x").status_code == 404


def test_needs_login_and_read_access_to_the_dag(data_version: str) -> None:
    client = TestClient(app)
    assert client.get(f"/churn/{data_version}/").status_code == 401  # no token, no cookie


def test_a_user_without_the_dag_is_refused(data_version: str, readable_dags: set[str]) -> None:
    readable_dags.clear()
    assert TestClient(app).get(f"/churn/{data_version}/").status_code == 403
