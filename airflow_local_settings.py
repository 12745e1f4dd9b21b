"""Read by Airflow in each of its processes (the repo root is on PYTHONPATH, the plugins folder on
sys.path).

The scheduler and Celery workers import the pipeline's libraries here, before they fork task
processes, so each task starts with them loaded; the dag-processor imports what DAG files import
before it forks its parse processes (see ``plugins/ct_airflow/preload.py``).
"""

import logging

__all__: list[str] = []  # no cluster policies here

try:
    from ct_airflow.preload import preload_for_forked_processes
except ModuleNotFoundError as missing:  # AIRFLOW__CORE__PLUGINS_FOLDER is not this repo's plugins/
    logging.getLogger(__name__).debug("not preloading task libraries: %s", missing)
else:
    preload_for_forked_processes()
