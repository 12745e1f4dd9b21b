"""Read by Airflow in each of its processes (the repo root is on PYTHONPATH, the plugins folder on
sys.path).

The scheduler and Celery workers import the pipeline's libraries here, before they fork task
processes, so each task starts with them loaded; the dag-processor imports what DAG files import
before it forks its parse processes (see ``plugins/ct_airflow/preload.py``).
"""

from ct_airflow.preload import preload_for_forked_processes

__all__: list[str] = []  # no cluster policies here

preload_for_forked_processes()
