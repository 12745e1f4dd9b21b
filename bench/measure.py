"""What every benchmark shares: repeated-run summaries, the machine, and result files.

Each benchmark writes ``bench/results/<name>.json`` (git-ignored raw runs); ``bench.report``
reads them all into ``bench/report.md`` and ``bench/report.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# How the floor and the orchestrated pass land their batches: the same format for both, or the
# floor would skip parsing work the tasks do (a CSV's timestamps arrive as text), and the one
# `make data` ships.
BATCH_FORMAT = "csv"
PACKAGES = (
    "apache-airflow",
    "mlflow",
    "great_expectations",
    "scikit-learn",
    "pandas",
    "pyarrow",
    "fastapi",
    "uvicorn",
)


# What a process's CPU accounting holds: CPU seconds in user and kernel mode, minor page faults
# (first touches of memory: the kernel zeroes or copies a page) and involuntary context switches
# (the process was runnable but another took its core). Tasks and floor stages report the same.
CPU_FIELDS = ("user_s", "system_s", "minor_faults", "involuntary_switches")


def cpu_usage() -> dict[str, float]:
    """This process's CPU accounting so far, all threads included (a forked child starts at 0)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "user_s": usage.ru_utime,
        "system_s": usage.ru_stime,
        "minor_faults": usage.ru_minflt,
        "involuntary_switches": usage.ru_nivcsw,
    }


def cpu_used_since(before: dict[str, float]) -> dict[str, float]:
    """What this process's CPU accounting grew by since ``before`` (from ``cpu_usage``)."""
    now = cpu_usage()
    return {key: round(now[key] - before[key], 3) for key in CPU_FIELDS}


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated runs, with the runs themselves."""
    if not values:
        raise ValueError("no runs to summarize")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def machine() -> dict[str, Any]:
    """CPU, memory and package versions, so a figure can be compared with the same setup."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions: dict[str, str] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write one benchmark's results (with the machine it ran on) for the report."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def read_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """Every benchmark's latest results, by name."""
    if not results_dir.is_dir():
        return {}
    return {path.stem: json.loads(path.read_text()) for path in sorted(results_dir.glob("*.json"))}
