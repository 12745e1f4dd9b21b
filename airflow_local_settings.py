"""Read by Airflow in each of its processes (the repo root is on PYTHONPATH).

The scheduler and Celery workers import the pipeline's libraries here, before they fork task
processes, so each task starts with them loaded; the dag-processor imports the pipeline config
before it forks its parse processes (see ``include/ct/preload.py``).
"""

from include.ct.preload import preload_for_task_processes

__all__: list[str] = []  # no cluster policies here

preload_for_task_processes()
