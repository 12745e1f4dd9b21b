"""Import the pipeline's libraries once, in the Airflow processes that fork task or parse processes.

A LocalExecutor task is forked from the scheduler, a Celery task from the Celery worker, each DAG
parse from the dag-processor. Imported here, before any fork, every child starts with pandas,
scikit-learn, MLflow, Great Expectations and this project's code already loaded (shared
copy-on-write pages) instead of importing them again in every task. ``airflow_local_settings.py``
calls ``preload_for_forked_processes`` in every Airflow process; only the forking ones act on it.
Set ``CT_PRELOAD_TASK_LIBRARIES=false`` to turn it off.

Forked children run the code their parent loaded: after changing ``include/`` or ``plugins/``,
restart the scheduler, the Celery workers and the dag-processor, as Airflow documents for forked
task execution (``compose restart`` does it in the production stack).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

# The libraries the steps use, by the public modules the library imports from.
HEAVY_MODULES = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.metrics",
    "mlflow",
    "mlflow.sklearn",
    "skops.io",  # the models' format: train saves, evaluate and deploy load through it
    "great_expectations",
    "matplotlib.pyplot",
)
# What the DAG files import: every task and every parse process imports them.
DAG_MODULES = (
    "include.ct.config",
    "ct_airflow.operators",
    "ct_airflow.operators.batch",
    "ct_airflow.operators.housekeeping",
    "ct_airflow.triggers",
    "ct_airflow.approval",
    "ct_airflow.retrain",
    "ct_airflow.runtime",
    "ct_airflow.run_notes",
)
# The library modules the operators call.
PIPELINE_MODULES = (
    *DAG_MODULES,
    "include.ct.data.arrival",
    "include.ct.data.extract",
    "include.ct.data.validate",
    "include.ct.data.data_docs",
    "include.ct.monitoring.drift",
    "include.ct.steps",
    "include.ct.modeling.train",
    "include.ct.modeling.evaluate",
    "include.ct.modeling.plots",
    "include.ct.registry.registry",
    "include.ct.registry.deploy",
    "include.ct.monitoring.monitor",
    "include.ct.batch.checks",
    "include.ct.batch.scoring",
    "include.ct.housekeeping.run",
)


def _subcommand(argv: Sequence[str]) -> list[str]:
    """The Airflow subcommand words of a command line, options left out."""
    return [arg for arg in argv[1:] if not arg.startswith("-")]


def forks_task_processes(argv: Sequence[str]) -> bool:
    """Whether this command line starts an Airflow process that forks task processes."""
    args = _subcommand(argv)
    return args[:1] == ["scheduler"] or args[:2] == ["celery", "worker"]


def forks_parse_processes(argv: Sequence[str]) -> bool:
    """Whether this command line starts the dag-processor, which forks a process per DAG file parse."""
    return _subcommand(argv)[:1] == ["dag-processor"]


def modules_to_preload(argv: Sequence[str]) -> tuple[str, ...]:
    """What this Airflow process should import before it forks: nothing unless it forks."""
    if forks_task_processes(argv):
        return HEAVY_MODULES + PIPELINE_MODULES
    if forks_parse_processes(argv):
        return DAG_MODULES
    return ()


def preload_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("CT_PRELOAD_TASK_LIBRARIES", "true").strip().lower() not in ("0", "false", "no", "off")


def preload_for_forked_processes(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Import what this process's forked children need (``modules_to_preload``); returns what it imported."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    wanted = modules_to_preload(argv) if preload_enabled(environ) else ()
    if not wanted:
        return []
    os.environ.setdefault("MPLBACKEND", "Agg")  # tasks draw plots to files, never to a screen
    started = time.perf_counter()
    loaded = []
    for name in wanted:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a slim image without one of them still runs its tasks
            log.warning("not preloading %s for forked processes: %s", name, exc)
            continue
        loaded.append(name)
    seconds = time.perf_counter() - started
    log.info("preloaded %d modules for forked processes in %.1f s", len(loaded), seconds)
    return loaded
