"""Which Airflow processes preload the pipeline's libraries for the processes they fork."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from include.ct import preload
from include.ct.preload import (
    DAG_MODULES,
    HEAVY_MODULES,
    PIPELINE_MODULES,
    TASK_RUNNER_MODULES,
    changed_sources,
    forks_task_processes,
    modules_to_preload,
    preload_for_task_processes,
    stamp_sources,
)


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
    scheduler = modules_to_preload(["airflow", "scheduler"])
    assert scheduler == HEAVY_MODULES + TASK_RUNNER_MODULES + PIPELINE_MODULES
    assert set(DAG_MODULES) <= set(PIPELINE_MODULES)
    assert modules_to_preload(["airflow", "triggerer"]) == ()


def test_every_module_a_dag_file_imports_is_preloaded_for_parses_and_tasks() -> None:
    """Besides Airflow's SDK (which every Airflow process has loaded), what the DAG files import."""
    dags = Path(__file__).resolve().parents[2] / "dags"
    imported = {
        node.module
        for path in dags.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    outside_the_sdk = {m for m in imported if m.split(".")[0] in ("airflow", "ct_airflow", "include")}
    outside_the_sdk -= {"airflow.sdk"}
    assert outside_the_sdk and outside_the_sdk <= set(DAG_MODULES)


def test_preload_imports_the_libraries_unless_turned_off() -> None:
    scheduler = ["airflow", "scheduler"]
    assert preload_for_task_processes(scheduler, {"CT_PRELOAD_TASK_LIBRARIES": "false"}) == []
    assert preload_for_task_processes(["airflow", "triggerer"], {}) == []
    wanted = HEAVY_MODULES + TASK_RUNNER_MODULES + PIPELINE_MODULES
    assert preload_for_task_processes(scheduler, {}) == list(wanted)
    assert all(name in sys.modules for name in wanted)


def test_the_scheduler_builds_mlflows_package_index_before_it_forks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.utils import requirements_utils

    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    preload_for_task_processes(["airflow", "dag-processor"], {})
    assert requirements_utils._PACKAGES_TO_MODULES is None  # parse processes never log models
    preload_for_task_processes(["airflow", "scheduler"], {})
    assert requirements_utils._PACKAGES_TO_MODULES is not None
    assert requirements_utils._PACKAGES_TO_MODULES["scikit-learn"] == "sklearn"


def test_the_scheduler_loads_the_task_listeners_before_it_forks() -> None:
    from airflow.sdk.listener import get_listener_manager

    get_listener_manager.cache_clear()
    preload_for_task_processes(["airflow", "dag-processor"], {})
    assert get_listener_manager.cache_info().currsize == 0  # parse processes run no listeners
    preload_for_task_processes(["airflow", "scheduler"], {})
    assert get_listener_manager.cache_info().currsize == 1
    assert get_listener_manager().has_listeners  # the plugins folder's run-note listener


def test_a_failing_warm_up_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def moved_internals() -> None:
        raise AttributeError("module has no attribute '_init_packages_to_modules_map'")

    def works() -> None:
        pass

    monkeypatch.setattr(preload, "WARM_UPS", (moved_internals, works))
    assert preload.warm_first_use_caches() == ["works"]
    assert "not warming moved_internals" in caplog.text


def test_changed_sources_notices_an_edit_and_a_removal(tmp_path: Path) -> None:
    kept, edited, removed = (tmp_path / name for name in ("kept.py", "edited.py", "removed.py"))
    for path in (kept, edited, removed):
        path.write_text("x = 1\n")
    stamps = stamp_sources([str(kept), str(edited), str(removed)])
    assert changed_sources(stamps) == []
    edited.write_text("x = 22\n")
    removed.unlink()
    assert changed_sources(stamps) == sorted([str(edited), str(removed)])


def _in_forked_child(question: Callable[[], bool]) -> bool:
    """Fork, answer ``question`` in the child (after the at-fork hooks ran) and return its answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, b"1" if question() else b"0")
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    return answer == b"1"


@pytest.mark.parametrize(
    "module",
    ["include.ct.config", "ct_airflow.operators"],  # the library, and the plugins' operators
)
def test_a_forked_child_imports_edited_own_code_afresh(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importlib.import_module(module)  # a preloaded module of this repo
    assert module in preload.own_module_sources()
    source = tmp_path / "edited.py"
    source.write_text("x = 1\n")
    monkeypatch.setattr(preload, "_preloaded_sources", stamp_sources([str(source)]))
    preload._register_fork_hook()

    def child_has_preloaded_module() -> bool:
        return module in sys.modules

    assert _in_forked_child(child_has_preloaded_module)  # unchanged: the child reuses it
    source.write_text("x = 22\n")
    assert not _in_forked_child(child_has_preloaded_module)  # edited: the child imports afresh
    assert module in sys.modules  # the parent keeps what it preloaded
