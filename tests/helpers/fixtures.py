"""Pytest fixtures that start real services (``testbed``): an MLflow tracking server, Airflow
metadata DBs, throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.services import (
    VENV_BIN,
    MlflowServer,
    PostgresDatabase,
    start_mlflow_server,
    stop,
    throwaway_database,
)


@pytest.fixture(scope="module")
def postgres_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server whose backend store is a throwaway PostgreSQL database."""
    with throwaway_database() as database:
        backend = database.url.replace("+psycopg2", "")
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=backend)
        try:
            yield server
        finally:
            stop(server.process)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server for one test module, set as MLFLOW_TRACKING_URI."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    try:
        yield server
    finally:
        if previous is not None:
            os.environ["MLFLOW_TRACKING_URI"] = previous
        stop(server.process)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh CT_DATA_DIR for one test module."""
    path = tmp_path_factory.mktemp("ct-data")
    previous = os.environ.get("CT_DATA_DIR")
    os.environ["CT_DATA_DIR"] = str(path)
    try:
        yield path
    finally:
        if previous is not None:
            os.environ["CT_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's SQLite metadata DB in the session's AIRFLOW_HOME, migrated once."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return home


@pytest.fixture
def postgres_database() -> Iterator[PostgresDatabase]:
    """A throwaway PostgreSQL database for one test."""
    with throwaway_database() as database:
        yield database
