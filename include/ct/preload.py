"""Import the pipeline's heavy libraries once, in the Airflow processes that fork task processes.

A LocalExecutor task is forked from a worker that was forked from the scheduler; a Celery task
from the Celery worker. Each CT task used to import GX, MLflow and scikit-learn again (5-15 s on
2 cores): most of the orchestration overhead per task. Imported here, before any fork, every
task starts with them loaded (copy-on-write pages, shared). ``airflow_local_settings.py`` calls
``preload_for_task_processes`` in every Airflow process; only the forking ones act on it.
Set ``CT_PRELOAD_TASK_LIBRARIES=false`` to turn it off.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

HEAVY_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.metrics",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "great_expectations",
    "matplotlib.pyplot",
)


def forks_task_processes(argv: Sequence[str]) -> bool:
    """Whether this command line starts an Airflow process that forks task processes."""
    args = [arg for arg in argv[1:] if not arg.startswith("-")]
    return args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]


def preload_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("CT_PRELOAD_TASK_LIBRARIES", "true").strip().lower() not in ("0", "false", "no", "off")


def preload_for_task_processes(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Import ``HEAVY_MODULES`` when this is a scheduler or Celery worker; returns what it imported."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if not preload_enabled(environ) or not forks_task_processes(argv):
        return []
    os.environ.setdefault("MPLBACKEND", "Agg")  # tasks draw plots to files, never to a screen
    started = time.perf_counter()
    loaded = []
    for name in HEAVY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a slim image without one of them still runs its tasks
            log.warning("not preloading %s for task processes: %s", name, exc)
            continue
        loaded.append(name)
    seconds = time.perf_counter() - started
    log.info("preloaded %d libraries for task processes in %.1f s", len(loaded), seconds)
    return loaded
