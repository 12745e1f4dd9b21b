"""DAG integrity, in the spirit of the Astro template's test (rewritten for Airflow 3.3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))
HEAVY_MODULES = ("pandas", "sklearn", "mlflow", "great_expectations", "matplotlib", "pyarrow")
CT_TASKS = ["extract", "validate", "train", "evaluate", "register", "deploy"]

BROKEN_CONFIG = """\
name: broken
task: classification
target: y
features: {a: {type: integer}}
metric: auc
promotion: {threshold: 0.5}
"""


@pytest.fixture(scope="module")
def dagbag() -> object:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_every_dag_file_imports_without_errors(dagbag: object) -> None:
    assert dagbag.import_errors == {}  # type: ignore[attr-defined]
    assert "ct_churn" in dagbag.dags  # type: ignore[attr-defined]


def test_every_dag_has_owner_tags_docs_and_retries(dagbag: object) -> None:
    for dag_id, dag in dagbag.dags.items():  # type: ignore[attr-defined]
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.max_active_runs == 1, dag_id
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            # A rollback is triggered and watched by a person: it is never retried blindly.
            if not dag_id.endswith("_rollback"):
                assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            assert task.doc_md, f"{dag_id}.{task.task_id} has no doc_md"


def test_ct_dag_shape_schedule_and_params(dagbag: object) -> None:
    dag = dagbag.dags["ct_churn"]  # type: ignore[attr-defined]
    assert [t.task_id for t in dag.topological_sort()] == CT_TASKS
    # Daily, or as soon as the landing watcher (a deferrable trigger) announces new data.
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.timetable.expression in ("@daily", "0 0 * * *")
    asset = dag.timetable.asset_condition
    assert asset.name == "ct_churn_new_data"
    (watcher,) = asset.watchers
    assert type(watcher.trigger).__name__ == "NewBatchTrigger"
    assert dag.catchup is False
    assert {"force", "min_improvement", "reason"} <= set(dag.params)
    assert dag.params["force"] is False
    # Trigger works in one click: every param's default passes its own schema (the form opens clean).
    dag.params.validate()
    assert dag.params["reason"] == "manual run"
    for task_id in ("train", "evaluate", "register"):
        task = dag.get_task(task_id)
        assert task.retries >= 3 and task.retry_exponential_backoff, task_id
    links = {
        task_id: [link.name for link in dag.get_task(task_id).operator_extra_links]
        for task_id in ("validate", "train", "evaluate", "register", "deploy")
    }
    assert links == {
        "validate": ["Validation report"],
        "train": ["MLflow run"],
        "evaluate": ["MLflow run"],
        "register": ["MLflow model version"],
        "deploy": ["MLflow model version"],
    }


def test_rollback_dag_is_manual_with_validated_params(dagbag: object) -> None:
    dag = dagbag.dags["ct_churn_rollback"]  # type: ignore[attr-defined]
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert [t.task_id for t in dag.tasks] == ["rollback"]
    assert {"version", "reason"} == set(dag.params)


def test_manual_approval_puts_a_person_before_the_alias_moves(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from testbed.services import copy_config

    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path,
        **{"name: churn": "name: gated", "schedule:": "deploy: {approval: manual}\nschedule:"},
    )
    previous = os.environ.get("CT_PIPELINES_DIR")
    os.environ["CT_PIPELINES_DIR"] = str(tmp_path)
    try:
        bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    finally:
        if previous is None:
            os.environ.pop("CT_PIPELINES_DIR")
        else:
            os.environ["CT_PIPELINES_DIR"] = previous
    assert bag.import_errors == {}
    dag = bag.dags["ct_gated"]
    assert [t.task_id for t in dag.topological_sort()][-3:] == ["register", "approve", "deploy"]
    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator)
    assert approve.defaults == ["Reject"]
    assert "approve" in dag.get_task("deploy").upstream_task_ids
    assert "approve" not in bag.dags["ct_churn"].task_ids


PARSE_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
DagBag(dag_folder="/nonexistent")  # warm Airflow itself up
before = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"errors": len(bag.import_errors),
                  "modules": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_without_heavy_imports(dag_file: Path) -> None:
    """What keeps parsing fast: no heavy library at parse time (``make bench`` times the parse)."""
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(dag_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=os.environ,
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["errors"] == 0
    heavy = [m for m in probe["modules"] if m.split(".")[0] in HEAVY_MODULES]
    assert heavy == [], f"{dag_file.name} imports heavy modules at parse time: {heavy[:5]}"


def _airflow(*args: str, env: dict[str, str], ok_codes: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode in ok_codes, result.stderr[-3000:]
    return result.stdout


def test_invalid_config_breaks_only_its_own_dag(airflow_db: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN_CONFIG)
    env = {**os.environ, "CT_PIPELINES_DIR": str(tmp_path)}
    _airflow("dags", "reserialize", env=env)
    # list-import-errors exits 1 when it has errors to show.
    listed = _airflow("dags", "list-import-errors", "-o", "json", env=env, ok_codes=(0, 1))
    errors = json.loads(listed.strip().splitlines()[-1])
    assert len(errors) == 1
    assert str(tmp_path / "broken.yaml") in errors[0]["error"]
    assert "key 'metric'" in errors[0]["error"]
    dags = json.loads(_airflow("dags", "list", "-o", "json", env=env).strip().splitlines()[-1])
    assert "ct_churn" in {d["dag_id"] for d in dags}
    # Fixing the file clears the error on the next parse.
    (tmp_path / "broken.yaml").unlink()
    _airflow("dags", "reserialize", env={**os.environ, "CT_PIPELINES_DIR": str(tmp_path)})
    after = _airflow("dags", "list-import-errors", "-o", "json", env=env).strip().splitlines()[-1]
    assert json.loads(after) == [] if after.startswith("[") else "No data found" in after


def test_batch_dag_scores_a_day_on_schedule_and_on_a_new_champion(dagbag: object) -> None:
    dag = dagbag.dags["ct_churn_batch"]  # type: ignore[attr-defined]
    assert [t.task_id for t in dag.topological_sort()] == ["resolve", "locate", "validate", "score"]
    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.asset_condition.name == "ct_churn_champion"
    dag.params.validate()
    assert dag.params["date"] is None
    # a promotion (deploy) and a manual rollback announce the new champion
    ct = dagbag.dags["ct_churn"]  # type: ignore[attr-defined]
    assert [a.name for a in ct.get_task("deploy").outlets] == ["ct_churn_champion"]
    rollback = dagbag.dags["ct_churn_rollback"]  # type: ignore[attr-defined]
    assert [a.name for a in rollback.get_task("rollback").outlets] == ["ct_churn_champion"]
    assert [link.name for link in dag.get_task("validate").operator_extra_links] == ["Validation report"]


def test_housekeeping_dag_runs_daily_per_pipeline_then_cleans_airflow_metadata(dagbag: object) -> None:
    dag = dagbag.dags["ct_housekeeping"]  # type: ignore[attr-defined]
    assert dag.timetable.expression in ("@daily", "0 0 * * *")
    passes = sorted(t for t in dag.task_ids if t.startswith("housekeep_"))
    assert "housekeep_churn" in passes
    assert set(passes) <= dag.get_task("airflow_db_clean").upstream_task_ids
    assert set(passes) <= dag.get_task("summary").upstream_task_ids
    dag.params.validate()
    assert dag.params["dry_run"] is False
    assert [link.name for link in dag.get_task("housekeep_churn").operator_extra_links] == ["MLflow run"]


def test_a_config_in_the_pipelines_dir_replaces_the_bundled_one_in_every_dag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from testbed.services import copy_config

    copy_config(
        REPO_ROOT / "include/pipelines/churn.yaml",
        tmp_path,
        **{
            "owner: mlops": "owner: churn-team",
            'schedule: "@daily"': "schedule: null",
            "  path: landing/churn\n": "  path: landing/churn\n  watch: false\n",
        },
    )
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert bag.import_errors == {}
    # Airflow collects a DAG file's DAGs in a set: were both configs built, either could win.
    for dag_id in ("ct_churn", "ct_churn_rollback", "ct_churn_monitor", "ct_churn_batch"):
        assert bag.dags[dag_id].owner == "churn-team", dag_id
    assert type(bag.dags["ct_churn"].timetable).__name__ == "NullTimetable"  # no schedule, no watcher
    housekeeping = bag.dags["ct_housekeeping"]
    assert [t for t in housekeeping.task_ids if t == "housekeep_churn"] == ["housekeep_churn"]
    assert housekeeping.get_task("housekeep_churn").owner == "churn-team"


def test_two_configs_of_one_folder_naming_one_pipeline_break_that_dag_naming_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from testbed.services import copy_config

    churn = REPO_ROOT / "include/pipelines/churn.yaml"
    first = copy_config(churn, tmp_path, "team_a.yaml", **{"name: churn\n": "name: shared\n"})
    second = copy_config(churn, tmp_path, "team_b.yaml", **{"name: churn\n": "name: shared\n"})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    errors = list(bag.import_errors.values())
    assert len(errors) == 1 and str(first) in errors[0] and str(second) in errors[0], errors
    assert "ct_shared" not in bag.dags and "ct_shared_rollback" not in bag.dags
    assert "ct_churn" in bag.dags  # the other pipelines still load
