"""Which Airflow processes preload the pipeline's libraries for the tasks they fork."""

from __future__ import annotations

import sys

import pytest

from include.ct.preload import HEAVY_MODULES, forks_task_processes, preload_for_task_processes


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


def test_preload_imports_the_heavy_libraries_unless_turned_off() -> None:
    scheduler = ["airflow", "scheduler"]
    assert preload_for_task_processes(scheduler, {"CT_PRELOAD_TASK_LIBRARIES": "false"}) == []
    assert preload_for_task_processes(["airflow", "triggerer"], {}) == []
    assert preload_for_task_processes(scheduler, {}) == list(HEAVY_MODULES)
    assert all(name in sys.modules for name in HEAVY_MODULES)
