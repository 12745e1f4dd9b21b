"""A real Airflow deployment with a real MLflow server, logged into with Debian's Chromium.

The stack runs the plugin exactly as users get it (SimpleAuthManager with an admin and a viewer,
as ``make run`` configures it); Playwright drives the browser. Screenshots go to
``$CT_BROWSER_ARTIFACTS`` (default ``test-artifacts/browser``): the docs' screenshots are taken
from this run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.airflow_stack import AirflowStack, airflow_stack
from testbed.services import REPO_ROOT, MlflowServer, copy_config, throwaway_database

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
USERS = {"admin": "admin-browser-test", "viewer": "viewer-browser-test"}
ARTIFACTS = Path(os.environ.get("CT_BROWSER_ARTIFACTS", REPO_ROOT / "test-artifacts" / "browser"))


def chromium_path() -> str | None:
    """Debian's Chromium (``make test`` installs it as root), or another Chromium on PATH."""
    explicit = os.environ.get("CT_CHROMIUM")
    if explicit:
        return explicit
    return next((found for name in CHROMIUM_CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class UiStack:
    """The running deployment: its Airflow stack, MLflow server and an admin API client."""

    airflow: AirflowStack
    mlflow: MlflowServer
    url: str

    def token(self, user: str = "admin") -> str:
        answer = httpx.post(
            f"{self.url}/auth/token", json={"username": user, "password": USERS[user]}, timeout=30
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def api(self, path: str, user: str = "admin") -> Any:
        answer = httpx.get(
            f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return str(state)
            time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id} still running after {timeout} s\n{self.airflow.logs()}")


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> Iterator[UiStack]:
    """The churn pipeline (runs only when triggered) on a fresh Airflow and MLflow."""
    root = tmp_path_factory.mktemp("ui")
    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        root / "pipelines",
        **{
            'schedule: "@daily"': "schedule: null",
            "  path: landing/churn\n": "  path: landing/churn\n  watch: false\n",
        },
    )
    home = root / "airflow"
    home.mkdir()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(USERS))
    env = {
        "CT_PIPELINES_DIR": str(root / "pipelines"),
        "CT_DATA_DIR": str(root / "data"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "CT_MLFLOW_UI_URL": mlflow_server.url,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    with (
        pytest.MonkeyPatch.context() as patch,
        throwaway_database() as database,
        airflow_stack(database, home, env) as stack,
    ):
        for key in ("CT_PIPELINES_DIR", "CT_DATA_DIR"):  # this process writes the batches
            patch.setenv(key, env[key])
        stack.wait_for_dag("ct_churn")
        yield UiStack(stack, mlflow_server, f"http://127.0.0.1:{stack.env['AIRFLOW__API__PORT']}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright; skips, saying why, where no Chromium is installed."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium: `make test` installs Debian's chromium when run as root (or set CT_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
