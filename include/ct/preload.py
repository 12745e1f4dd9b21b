"""Import the pipeline's libraries once, in the Airflow processes that fork task or parse processes.

A LocalExecutor task is forked from a worker that was forked from the scheduler; a Celery task
from the Celery worker; each DAG parse from the dag-processor. Each CT task used to import GX,
MLflow and scikit-learn again (5-15 s on 2 cores) and every task and parse built the pipeline
config's pydantic models again (~0.4 s): most of the orchestration overhead per task. Imported
here, before any fork, every child starts with them loaded (copy-on-write pages, shared).
First-use work that depends only on the installed environment (``WARM_UPS``) is done here too.
``airflow_local_settings.py`` calls ``preload_for_task_processes`` in every Airflow process; only
the forking ones act on it. Set ``CT_PRELOAD_TASK_LIBRARIES=false`` to turn it off.

This repo's own modules (the library ``include.ct`` and the plugins' ``ct_airflow``) are preloaded
too, so a forked child checks whether their source files changed since: if one did, the child
drops them and imports the code afresh, and edits reach the next task without restarting the
scheduler.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

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
    # imported lazily on first use inside the steps (found by diffing sys.modules around each
    # step after the preload): MLflow's model flavour API and its git run context, pyarrow's
    # dataset reader, GX's Data Docs builder, matplotlib's PNG backend
    "mlflow.pyfunc",
    "git",
    "pyarrow.dataset",
    "great_expectations.render.renderer.site_builder",
    "matplotlib.backends.backend_agg",
    # the deploy step's client of the prediction service (httpx imports httpcore on first use)
    "httpx",
    "httpcore",
    # imported on first use inside the steps, found by diffing sys.modules in each task process
    # at its end against its parent's at the fork: scikit-learn's dataframe layer (narwhals),
    # MLflow's request headers and model display, pandas' to_dict, PIL's image plugins (plots),
    # the time zone database, and requests' netrc lookup on every call
    "narwhals._pandas_like.namespace",
    "narwhals.stable.v2._namespace",
    "mlflow.tracking.request_header.registry",
    "mlflow.models.display_utils",
    "pandas.core.methods.to_dict",
    "PIL.BmpImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.JpegImagePlugin",
    "PIL.PpmImagePlugin",
    "tzdata.zoneinfo",
    "netrc",
)
# Airflow's own modules that every task imports after the fork, in its supervisor (the task
# supervisor and its log setup) or in the task process (the DAG bundle loader, templating).
TASK_RUNNER_MODULES = (
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.bundles.local",
    "airflow.sdk.bases.decorator",
    "airflow.version",
    "jinja2.ext",
)
# What the DAG files import: every task and every parse process imports them. The operators and
# triggers come from the plugins folder, which Airflow puts on sys.path before it reads
# airflow_local_settings.py.
DAG_MODULES = (
    "include.ct.config",
    "airflow.providers.standard.operators.python",
    "ct_airflow.operators",
    "ct_airflow.triggers",
    "ct_airflow.approval",
    "ct_airflow.retrain",
)
# The library modules the operators call (they import the rest of include.ct themselves).
PIPELINE_MODULES = (
    *DAG_MODULES,
    "include.ct.arrival",
    "include.ct.extract",
    "include.ct.validate",
    "include.ct.data_docs",  # what validate renders each snapshot's Data Docs with
    "include.ct.drift",
    "include.ct.steps",
    "include.ct.train",
    "include.ct.evaluate",
    "include.ct.plots",
    "include.ct.registry",
    "include.ct.deploy",
    "include.ct.monitor",
    "include.ct.serving",  # the deploy step compares the service's answers with its own
    "include.ct.datagen",
)
# This repo's packages: the library and the plugins' operators. Preloaded, they are checked for
# edits in every forked child (``forget_changed_pipeline_code``).
OWN_PACKAGES = ("include", "ct_airflow")


def index_installed_packages() -> None:
    """Build MLflow's map of installed distributions to modules, as logging a model first does.

    Every ``log_model`` checks the model's pinned requirements against the environment through
    this map; building it scans every installed distribution's file list (~0.35 s), which each
    train task paid again. Built before the fork, every task inherits it.
    """
    from mlflow.utils import requirements_utils

    requirements_utils._init_packages_to_modules_map()


def load_task_listener_plugins() -> None:
    """Load the plugins and their task listeners, as every task process did on starting (~30 ms).

    The task runner asks Airflow's SDK for its listener manager first thing, which scans the
    plugins folder and the installed entry points. Built before the fork, each task inherits it.
    A plugin added or edited later reaches tasks after a restart, as Airflow documents for forked
    task execution; edits to the ``ct_airflow`` operators still reach the next task.
    """
    # Named, not imported at the top: the library runs without Airflow; this runs only in its processes.
    importlib.import_module("airflow.sdk.listener").get_listener_manager()


# First-use work of the tasks that only depends on the installed environment and plugins, done once before
# the fork as the imports are (found by profiling each step's first call against its second, and
# each task process from its fork to its end).
WARM_UPS = (index_installed_packages, load_task_listener_plugins)

SourceStamp = tuple[int, int]  # (mtime_ns, size) of a module's source file
_preloaded_sources: dict[str, SourceStamp] = {}


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
        return HEAVY_MODULES + TASK_RUNNER_MODULES + PIPELINE_MODULES
    if forks_parse_processes(argv):
        return DAG_MODULES
    return ()


def preload_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("CT_PRELOAD_TASK_LIBRARIES", "true").strip().lower() not in ("0", "false", "no", "off")


def own_module_sources() -> dict[str, str]:
    """Source file of every loaded module of this repo's packages (``OWN_PACKAGES``), by module name."""
    sources = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in OWN_PACKAGES:
            continue
        path = getattr(module, "__file__", None)
        if path:
            sources[name] = path
    return sources


def stamp_sources(paths: Iterable[str]) -> dict[str, SourceStamp]:
    """(mtime_ns, size) of each file that exists."""
    stamps = {}
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        stamps[path] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def changed_sources(stamps: Mapping[str, SourceStamp]) -> list[str]:
    """The files whose (mtime_ns, size) differ from ``stamps`` now, or that are gone."""
    now = stamp_sources(stamps)
    return sorted(path for path, stamp in stamps.items() if now.get(path) != stamp)


def forget_changed_pipeline_code() -> list[str]:
    """In a forked child: drop the preloaded library modules if any of their sources changed.

    The child then imports the current code, as it would without the preload. Returns the files
    that changed (empty when the preloaded code is current).
    """
    changed = changed_sources(_preloaded_sources)
    if not changed:
        return []
    for name in own_module_sources():
        if not name.endswith(".preload"):  # this hook's own module stays: it is running
            sys.modules.pop(name, None)
    _preloaded_sources.clear()
    log.warning(
        "%s changed since this Airflow process preloaded the pipeline code: importing it afresh "
        "(restart the scheduler, Celery worker or dag-processor to preload it again)",
        ", ".join(changed),
    )
    return changed


@functools.cache
def _register_fork_hook() -> None:
    """Once per process: check the preloaded sources in every child this process forks."""
    os.register_at_fork(after_in_child=forget_changed_pipeline_code)


def preload_for_task_processes(
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
    if forks_task_processes(argv):
        warm_first_use_caches()
    _preloaded_sources.update(stamp_sources(own_module_sources().values()))
    _register_fork_hook()
    seconds = time.perf_counter() - started
    log.info("preloaded %d modules for forked processes in %.1f s", len(loaded), seconds)
    return loaded


def warm_first_use_caches() -> list[str]:
    """Run ``WARM_UPS``; one that fails (a library changed its internals) only costs its time."""
    warmed = []
    for warm_up in WARM_UPS:
        try:
            warm_up()
        except Exception as exc:  # noqa: BLE001 - a warm-up is an optimisation, never a failure
            log.warning("not warming %s for forked processes: %s", warm_up.__name__, exc)
            continue
        warmed.append(warm_up.__name__)
    return warmed
