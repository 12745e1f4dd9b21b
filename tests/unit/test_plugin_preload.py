"""Which Airflow processes preload the pipeline's libraries for the processes they fork."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from ct_airflow.preload import (
    DAG_MODULES,
    HEAVY_MODULES,
    PIPELINE_MODULES,
    forks_task_processes,
    modules_to_preload,
    preload_for_forked_processes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "forks"),
    [
        (["airflow", "scheduler"], True),
        (["airflow", "scheduler", "--num-runs", "3"], True),
        (["airflow", "celery", "worker", "--queues", "default"], True),
        (["airflow", "dag-processor"], False),
        (["airflow", "triggerer"], False),
        (["airflow", "api-server"], False),
        (["airflow", "dags", "list"], False),
        (["pytest", "tests"], False),
    ],
)
def test_only_processes_that_fork_tasks_preload(argv: list[str], forks: bool) -> None:
    assert forks_task_processes(argv) is forks


def test_the_dag_processor_preloads_only_what_dag_files_import() -> None:
    assert modules_to_preload(["airflow", "dag-processor", "--num-runs", "1"]) == DAG_MODULES
    assert modules_to_preload(["airflow", "scheduler"]) == HEAVY_MODULES + PIPELINE_MODULES
    assert set(DAG_MODULES) <= set(PIPELINE_MODULES)
    assert modules_to_preload(["airflow", "triggerer"]) == ()


def test_every_project_module_a_dag_file_imports_is_preloaded_for_parses_and_tasks() -> None:
    imported = {
        node.module
        for path in (REPO_ROOT / "dags").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    ours = {m for m in imported if m.split(".")[0] in ("ct_airflow", "include")}
    assert ours and ours <= set(DAG_MODULES)


def test_preload_imports_the_libraries_unless_turned_off() -> None:
    scheduler = ["airflow", "scheduler"]
    assert preload_for_forked_processes(scheduler, {"CT_PRELOAD_TASK_LIBRARIES": "false"}) == []
    assert preload_for_forked_processes(["airflow", "triggerer"], {}) == []
    wanted = HEAVY_MODULES + PIPELINE_MODULES
    assert preload_for_forked_processes(scheduler, {}) == list(wanted)
    assert all(name in sys.modules for name in wanted)


def test_only_public_modules_are_preloaded() -> None:
    """Public modules of the libraries and this project's own modules, nothing private."""
    for name in HEAVY_MODULES + PIPELINE_MODULES:
        assert not any(part.startswith("_") for part in name.split(".")), name


def test_airflow_local_settings_loads_where_the_plugins_folder_is_not_on_the_path(tmp_path: Path) -> None:
    """Any process that imports Airflow with the repo root on its path reads this file: a missing
    plugins folder (another AIRFLOW_HOME) skips the preload instead of breaking `import airflow`."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", "import airflow_local_settings"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
