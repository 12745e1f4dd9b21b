"""airflow_settings.yaml loader: validation names the entry; secrets come from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.airflow_settings import DEFAULT_FILE, SettingsError, import_files, load_settings, main

GOOD = """
airflow:
  connections:
    - conn_id: warehouse
      conn_type: postgres
      conn_host: db.internal
      conn_port: 5432
      conn_login: reader
      conn_password: ${WAREHOUSE_PASSWORD}
      conn_extra: {sslmode: require}
  pools:
    - {pool_name: ct_training, pool_slot: 2, pool_description: training}
  variables:
    - {variable_name: ct_owner, variable_value: mlops}
    - {variable_name: ct_limits, variable_value: {rows: 10}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text(text)
    return path


def test_the_repository_file_seeds_the_prediction_service_connection() -> None:
    env = {"CT_SERVING_URL": "http://serving:8000", "CT_SERVING_RELOAD_TOKEN": "a-long-reload-token"}
    settings = load_settings(DEFAULT_FILE, env=env)
    [serving] = settings.connections
    assert (serving.conn_id, serving.conn_host, serving.conn_password) == (
        "ct_serving",
        "http://serving:8000",
        "a-long-reload-token",
    )
    assert settings.pools == []  # no pool that no task uses
    with pytest.raises(SettingsError, match="CT_SERVING_URL"):
        load_settings(DEFAULT_FILE, env={})


def test_secrets_are_expanded_and_written_in_airflows_import_format(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, GOOD), env={"WAREHOUSE_PASSWORD": "s3cret"})
    files = import_files(settings, tmp_path)
    connections = json.loads(files["connections"].read_text())
    assert connections == {
        "warehouse": {
            "conn_type": "postgres",
            "host": "db.internal",
            "port": 5432,
            "login": "reader",
            "password": "s3cret",
            "extra": '{"sslmode": "require"}',
        }
    }
    assert json.loads(files["pools"].read_text()) == {
        "ct_training": {"slots": 2, "description": "training", "include_deferred": False}
    }
    assert json.loads(files["variables"].read_text()) == {"ct_owner": "mlops", "ct_limits": {"rows": 10}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("      conn_type: postgres\n", ""),
            r"airflow\.connections\[0\] \(conn_id 'warehouse'\)\.conn_type: Field required",
        ),
        (
            GOOD.replace("conn_port: 5432", "conn_port: fifty"),
            r"airflow\.connections\[0\] \(conn_id 'warehouse'\)\.conn_port: Input should be a valid integer",
        ),
        (
            GOOD.replace("pool_slot: 2", "pool_slot: -1"),
            r"airflow\.pools\[0\] \(pool_name 'ct_training'\)\.pool_slot",
        ),
        (GOOD.replace("pool_slot:", "pool_slots:"), r"pool_slots: Extra inputs are not permitted"),
        (GOOD.replace("ct_limits", "ct_owner"), r"variable_name \['ct_owner'\] defined more than once"),
        ("airflow: [1, 2", r"not valid YAML"),
        ("- just a list", r"expected a mapping"),
    ],
)
def test_a_malformed_file_is_rejected_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(_write(tmp_path, text), env={"WAREHOUSE_PASSWORD": "x"})


def test_a_missing_secret_names_the_variable_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"airflow\.connections\[0\]\.conn_password: .*WAREHOUSE_PASSWORD"
    ):
        load_settings(_write(tmp_path, GOOD), env={})


def test_check_command_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _write(tmp_path, GOOD.replace("pool_slot: 2", "pool_slot: many"))
    assert main(["check", str(bad)]) == 2
    assert "pool_slot" in capsys.readouterr().err
    monkeypatch.setenv("CT_SERVING_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("CT_SERVING_RELOAD_TOKEN", "a-long-reload-token")
    assert main(["check", str(DEFAULT_FILE)]) == 0
