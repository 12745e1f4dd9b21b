"""Benchmark-only Airflow plugin: every task process reports its own peak RSS and CPU as it ends.

``bench.orchestrated`` samples process peaks once a second and misses tasks that end sooner.
This listener runs inside the task process after ``execute`` and appends one JSON line,
``{"ti_id", "peak_bytes", "cpu"}``, to the file named by ``CT_BENCH_TASK_RSS_LOG``: the process's
own peak only, since a child's reported peak includes the parent's pages it had before ``exec``
(the sampler's tree sum covers children that live a second or more), and its CPU accounting
since the fork (``bench.measure.cpu_usage``), which the floor records per stage to compare.
Only the bench's own plugins folder loads it; the shipped plugins never do.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from bench.measure import cpu_usage

LOG_ENV = "CT_BENCH_TASK_RSS_LOG"


def task_peak_bytes() -> int:
    """This process's peak RSS, inherited pages included, as VmHWM counts it (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def report_peak(ti_id: str) -> None:
    """Append this task's peak and CPU to the log; one short O_APPEND write, so lines never
    interleave."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = {"ti_id": ti_id, "peak_bytes": task_peak_bytes(), "cpu": cpu_usage()}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    report_peak(str(task_instance.id))


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    report_peak(str(task_instance.id))


class BenchTaskRssPlugin(AirflowPlugin):
    name = "ct_bench_task_rss"
    listeners = [sys.modules[__name__]]
