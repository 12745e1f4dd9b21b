"""The prediction service's address and reload token come from the ct_serving connection."""

from __future__ import annotations

import json

import pytest

from ct_airflow.hooks.serving import PredictionServiceHook, service_url


@pytest.mark.parametrize(
    ("host", "port", "schema", "url"),
    [
        ("http://serving:8000/", None, None, "http://serving:8000"),
        ("serving", 8000, None, "http://serving:8000"),
        ("serving.example", None, "https", "https://serving.example"),
        (None, 8000, None, None),
    ],
)
def test_the_connection_fields_make_the_base_url(
    host: str | None, port: int | None, schema: str | None, url: str | None
) -> None:
    assert service_url(host, port, schema) == url


def test_the_connection_names_the_service_and_holds_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "http", "host": "http://serving:8000", "password": "a-long-reload-token"}
    monkeypatch.setenv("AIRFLOW_CONN_CT_SERVING", json.dumps(connection))
    monkeypatch.setenv("CT_SERVING_URL", "http://elsewhere:1")  # the connection wins
    client = PredictionServiceHook().get_conn()
    assert client is not None
    assert (client.base_url, client.token) == ("http://serving:8000", "a-long-reload-token")
    client.close()


def test_without_the_connection_the_environment_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CT_SERVING", raising=False)
    monkeypatch.setenv("CT_SERVING_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("CT_SERVING_RELOAD_TOKEN", "a-long-reload-token")
    client = PredictionServiceHook().get_conn()
    assert client is not None and client.base_url == "http://127.0.0.1:8000"
    client.close()
    monkeypatch.delenv("CT_SERVING_URL")
    assert PredictionServiceHook().get_conn() is None  # no live checks, said in the deploy log
