"""DAG parse time per file: ``airflow dags report`` and a cold import of each DAG file.

Runs against a throwaway ``AIRFLOW_HOME`` with the repo's dags and plugins folders and the
environment of ``scripts/run_local.sh``. Writes ``bench/results/dag_parse.json``.

    python -m bench.dag_parse --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.measure import REPO_ROOT, summarize, write_result

DAGS = REPO_ROOT / "dags"
AIRFLOW = Path(sys.executable).parent / "airflow"

# A fresh interpreter imports Airflow's SDK first (every parser has it loaded), then times
# only the DAG file's own module execution, as the DAG processor does per file.
_IMPORT_ONE = """
import importlib.util, json, sys, time
import airflow.sdk  # noqa: F401  already imported in every DAG processor
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("bench_dag_module", path)
module = importlib.util.module_from_spec(spec)
started = time.perf_counter()
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def airflow_env(home: Path) -> dict[str, str]:
    """The environment ``scripts/run_local.sh`` gives Airflow, with a throwaway home."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CT_DATA_DIR": str(home / "data"),
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def import_seconds(path: Path, env: dict[str, str]) -> float:
    """Seconds a cold interpreter spends executing one DAG file."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ONE, str(path)],
        env={**env, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'plugins'}"},
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def dags_report(env: dict[str, str]) -> list[dict[str, Any]]:
    """``airflow dags report`` rows (file, duration in seconds, DAGs, tasks) after a DB migrate."""
    subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, check=True)
    done = subprocess.run(
        [str(AIRFLOW), "dags", "report", "-o", "json"], env=env, capture_output=True, text=True, check=True
    )
    table = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("[{"))
    rows = json.loads(table)
    return [{**row, "seconds": _seconds(row["duration"])} for row in rows]


def _seconds(duration: str) -> float:
    hours, minutes, seconds = duration.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def measure(repeats: int) -> dict[str, Any]:
    """Cold import time of every DAG file (``repeats`` runs each) and the DAG processor's report."""
    with tempfile.TemporaryDirectory(prefix="ct-bench-airflow-") as home:
        env = airflow_env(Path(home))
        files = {
            path.name: summarize([import_seconds(path, env) for _ in range(repeats)])
            for path in sorted(DAGS.glob("*.py"))
            if not path.name.startswith("_")
        }
        report = dags_report(env)
    return {"files": files, "airflow_dags_report": report, "repeats": repeats, "profile_note": PROFILE_NOTE}


PROFILE_NOTE = (
    "A cold import of a DAG file is mostly Airflow itself: `python -X importtime` shows ~75% of "
    "ct_pipelines.py's import in `ct_airflow.operators` -> the standard provider's "
    "TriggerDagRunOperator -> airflow.api.common.trigger_dag -> airflow.models.dagrun (the ORM "
    "models), which the DAG processor has already loaded; hence the much smaller figure of "
    "`airflow dags report`. The DAG files themselves import no ML library at parse time."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(args.repeats)
    path = write_result("dag_parse", result)
    for name, summary in result["files"].items():
        print(
            f"{name}: import {summary['median']:.3f} s (min {summary['min']:.3f}, max {summary['max']:.3f})"
        )
    for row in result["airflow_dags_report"]:
        print(f"{row['file']}: airflow dags report {row['seconds']:.3f} s, {row['dags']}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
