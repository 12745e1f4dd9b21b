"""Run a CT DAG through Airflow in-process with ``dag.test()`` and report what happened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DagRunResult:
    run_id: str
    state: str
    tasks: dict[str, str]
    xcom: dict[str, Any]
    links: dict[str, dict[str, Any]]  # task id -> extra link name -> address, as the UI shows them


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, logical_date: Any = None) -> DagRunResult:
    """Parse the DAG folder afresh (configs may have changed) and run one DAG to the end."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    dag_run = dag.test(run_conf=conf or {}, **({"logical_date": logical_date} if logical_date else {}))
    tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    xcom = {}
    links = {}
    for ti in dag_run.get_task_instances():
        if str(ti.state) == "success":
            xcom[ti.task_id] = ti.xcom_pull(task_ids=ti.task_id)
        extra_links = dag.get_task(ti.task_id).operator_extra_links
        if extra_links and str(ti.state) in ("success", "failed"):
            links[ti.task_id] = {
                link.name: ti.xcom_pull(task_ids=ti.task_id, key=link.xcom_key) for link in extra_links
            }
    return DagRunResult(dag_run.run_id, str(dag_run.state), tasks, xcom, links)
