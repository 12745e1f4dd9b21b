"""Test-wide setup: an isolated Airflow home and data folder, set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="ct-tests-"))

# Airflow reads its configuration when first imported: pin it to a throwaway home now.
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
os.environ["CT_DATA_DIR"] = str(_SESSION_HOME / "data")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_HOME / 'mlflow.db'}"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["CT_CODE_VERSION"] = "test"
os.environ.pop("CT_PIPELINES_DIR", None)
os.environ.setdefault("PYTHONPATH", str(REPO_ROOT))

pytest_plugins = ["tests.helpers.fixtures"]
