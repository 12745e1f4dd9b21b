"""The bundled churn pipeline end to end through Airflow, against a real MLflow server.

The tests form one story on one data folder and registry, in order: first champion, nothing new,
a rejected challenger, broken batches, then a good batch that trains again.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from include.ct.batch import inputs
from include.ct.batch.partitions import output_root
from include.ct.config import find_pipeline_config
from include.ct.storage import pipeline_paths
from testbed.services import REPO_ROOT, MlflowServer, copy_config
from tests.helpers.airflow_runs import run_dag
from tools import datagen

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture(scope="module")
def env(mlflow_server: MlflowServer, data_dir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


def versions(client: MlflowClient) -> list[str]:
    return sorted(v.version for v in client.search_model_versions("name = 'churn'"))


def test_batch_scoring_before_any_champion_skips_with_the_reason(env: MlflowClient) -> None:
    datagen.write_scoring_day(find_pipeline_config("churn"), date(2026, 12, 1), rows=500)
    result = run_dag("ct_churn_batch", {"date": "2026-12-01"})
    assert result.tasks == dict.fromkeys(["resolve", "locate", "validate", "score"], "skipped")


def test_first_run_registers_a_champion_with_lineage(env: MlflowClient) -> None:
    config = find_pipeline_config("churn")
    datagen.write_batch(config, rows=3000)
    result = run_dag("ct_churn", {"reason": "first model"})
    assert result.state == "success", result.tasks
    assert set(result.tasks.values()) == {"success"}

    champion = env.get_model_version_by_alias("churn", "champion")
    data_version = result.xcom["extract"]["data_version"]
    assert champion.tags["ct.dag_id"] == "ct_churn"
    assert champion.tags["ct.run_id"] == result.run_id
    assert champion.tags["ct.pipeline"] == "churn"
    assert champion.tags["ct.data_version"] == data_version
    assert champion.tags["ct.decision"] == "promote"
    run = env.get_run(champion.run_id)
    assert run.data.tags["ct.data_version"] == data_version
    assert run.data.tags["ct.run_id"] == result.run_id
    assert run.data.tags["ct.reason"] == "first model"
    assert run.data.tags["ct.decision"] == "promote"
    assert run.data.metrics["test_roc_auc"] > 0.7
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "evaluation"}
    artifacts = {a.path for a in env.list_artifacts(champion.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/roc_curve.png"} <= artifacts
    assert result.xcom["register"]["version"] == champion.version
    assert result.xcom["deploy"]["version"] == champion.version
    report = Path(result.xcom["validate"]["report"])
    assert report.exists() and "passed" in report.read_text()
    # each task links to what it produced (the addresses the Airflow UI shows)
    assert result.links["validate"]["Validation report"].endswith(f"/ct-reports/churn/{data_version}/")
    assert result.links["train"]["MLflow run"].endswith(f"/runs/{champion.run_id}")
    assert result.links["evaluate"]["MLflow run"].endswith(f"/runs/{champion.run_id}")
    for task_id in ("register", "deploy"):
        assert result.links[task_id]["MLflow model version"].endswith(f"/versions/{champion.version}")


def test_second_run_without_new_data_is_skipped(env: MlflowClient) -> None:
    before = versions(env)
    result = run_dag("ct_churn")
    assert result.tasks["extract"] == "skipped"
    assert result.tasks["register"] == "skipped"
    assert versions(env) == before


def test_challenger_that_misses_the_gate_leaves_the_champion(env: MlflowClient) -> None:
    config = find_pipeline_config("churn")
    champion_before = env.get_model_version_by_alias("churn", "champion").version
    datagen.write_batch(config, rows=3000)
    result = run_dag("ct_churn", {"min_improvement": 0.5, "reason": "strict gate drill"})
    assert result.state == "success", result.tasks
    assert result.tasks["evaluate"] == "success"
    assert result.tasks["register"] == "skipped"
    assert env.get_model_version_by_alias("churn", "champion").version == champion_before
    skew = result.xcom["validate"]["value_skew"]
    assert skew["champion"] == champion_before
    assert set(skew["psi"]) == set(config.features)
    assert skew["drifted"] == []  # same distribution as the champion's training data
    decision = result.xcom["evaluate"]
    assert decision["promote"] is False
    assert decision["outcome"] == "reject"
    # judged on the paired interval of the improvement (promotion.confidence), which it names
    assert "at or below the margin +0.5000" in decision["summary"] and "95% CI, DeLong" in decision["summary"]
    run = env.get_run(result.xcom["train"]["run_id"])
    assert run.data.tags["ct.decision"] == "reject"
    assert "at or below the margin" in run.data.tags["ct.decision_reason"]
    assert "eval_champion_roc_auc" in run.data.metrics
    # the interval, its n and confidence are on the run, as the gate's reason states them
    metrics = run.data.metrics
    paired = decision["comparison"]
    assert metrics["eval_improvement_low"] == pytest.approx(paired["low"])
    assert metrics["eval_improvement_high"] == pytest.approx(paired["high"])
    assert metrics["eval_improvement_low"] <= metrics["eval_improvement"] <= metrics["eval_improvement_high"]
    assert (metrics["eval_rows"], metrics["eval_confidence"]) == (paired["n"], 0.95)
    assert f"n={paired['n']}" in decision["summary"]
    assert [v for v in versions(env) if v not in [champion_before]] == []


@pytest.mark.parametrize(
    ("breakage", "column", "rule"),
    [
        ("missing_column", "support_calls", "expect_table_columns_to_match_set"),
        ("wrong_type", "tenure_months", "expect_column_values_to_be_in_type_list"),
        ("out_of_range", "tenure_months", "expect_column_values_to_be_between"),
    ],
)
def test_broken_batch_stops_at_validation_and_is_quarantined(
    env: MlflowClient, capfd: pytest.CaptureFixture[str], breakage: str, column: str, rule: str
) -> None:
    config = find_pipeline_config("churn")
    before = versions(env)
    runs_before = len(env.search_runs([env.get_experiment_by_name("ct_churn").experiment_id]))
    bad = datagen.write_batch(config, rows=500, breakage=breakage)
    result = run_dag("ct_churn")
    assert result.state == "failed"
    assert result.tasks["validate"] == "failed"
    assert result.tasks["train"] == "upstream_failed"
    output = capfd.readouterr()
    log = output.out + output.err
    assert f"file '{bad.name}'" in log and column in log and rule in log
    quarantine = pipeline_paths(config).quarantine
    assert (quarantine / bad.name).exists()
    assert not bad.exists()
    report = json.loads((quarantine / f"{bad.name}.report.json").read_text())
    assert any(f["rule"] == rule and column in f["column"] for f in report["failures"])
    assert versions(env) == before
    assert len(env.search_runs([env.get_experiment_by_name("ct_churn").experiment_id])) == runs_before


def test_a_later_good_batch_trains_again(env: MlflowClient) -> None:
    config = find_pipeline_config("churn")
    experiment = env.get_experiment_by_name("ct_churn").experiment_id
    runs_before = len(env.search_runs([experiment]))
    datagen.write_batch(config, rows=3000)
    result = run_dag("ct_churn", {"reason": "after the quarantine"})
    assert result.state == "success", result.tasks
    assert result.tasks["train"] == "success"
    assert len(env.search_runs([experiment])) == runs_before + 1
    decision = result.xcom["evaluate"]
    champion = env.get_model_version_by_alias("churn", "champion")
    if decision["promote"]:
        assert champion.run_id == result.xcom["train"]["run_id"]
        assert champion.tags["ct.previous_champion"]
    else:
        assert result.tasks["register"] == "skipped"


def test_the_batch_dag_scores_a_day_with_the_champion_and_rescores_it_in_place(env: MlflowClient) -> None:
    champion = env.get_model_version_by_alias("churn", "champion").version
    # every promotion announced itself on the champion Asset, which schedules ct_churn_batch
    events = champion_events()
    assert events and events[-1]["version"] == champion
    assert events[-1]["payload"]["trigger"] == "new_champion"
    assert events[-1]["payload"]["reason"].startswith(f"new champion: v{champion} (")
    first = run_dag("ct_churn_batch", {"date": "2026-12-01"})
    assert set(first.tasks.values()) == {"success"}, first.tasks
    scored = first.xcom["score"]
    assert (scored["rows"], scored["model_version"]) == (500, champion)
    rows = pd.read_parquet(scored["output"])
    assert len(rows) == 500 and rows["customer_id"].is_unique
    assert set(rows["model_version"]) == {champion} and set(rows["scoring_run_id"]) == {first.run_id}
    assert set(rows["input_version"]) == {first.xcom["locate"]["data_version"]}
    assert first.links["score"]["MLflow model version"].endswith(f"/versions/{champion}")
    assert "/ct-reports/churn/batch_2026-12-01_" in first.links["validate"]["Validation report"]

    again = run_dag("ct_churn_batch", {"date": "2026-12-01"})
    assert again.xcom["score"]["output"] == scored["output"]
    rescored = pd.read_parquet(scored["output"])
    assert len(rescored) == 500 and set(rescored["scoring_run_id"]) == {again.run_id}
    columns = ["customer_id", "prediction", "probability_1", "model_version", "input_version"]
    assert rescored[columns].equals(rows[columns])


def test_a_bad_day_to_score_is_quarantined_and_nothing_is_scored(env: MlflowClient) -> None:
    config = find_pipeline_config("churn")
    bad = datagen.write_scoring_day(config, date(2026, 12, 3), rows=300, breakage="out_of_range")
    result = run_dag("ct_churn_batch", {"date": "2026-12-03"})
    assert (result.tasks["validate"], result.tasks["score"]) == ("failed", "upstream_failed")
    assert not bad.exists() and (pipeline_paths(config).quarantine / bad.name).exists()
    assert not (output_root(config) / "date=2026-12-03").exists()


WAIT_20_SECONDS = "  input_wait_minutes: 0.34\n  input_poll_seconds: 1\n"


def test_a_late_day_to_score_is_waited_for_and_a_missing_one_skipped_after_the_wait(
    env: MlflowClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the bundled churn pipeline, waiting up to 20 s for its input and looking every second
    copy_config(
        REPO_ROOT / "include" / "pipelines" / "churn.yaml",
        tmp_path / "pipelines",
        **{"  engine: in_process": f"  engine: in_process\n{WAIT_20_SECONDS}"},
    )
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "pipelines"))
    config = find_pipeline_config("churn")
    assert config.batch is not None and config.batch.input_wait_minutes == 0.34
    # the day's file lands 2 s after the task's first look found nothing, so it must wait for it
    lands = threading.Timer(
        2.0, datagen.write_scoring_day, args=(config, date(2026, 12, 5)), kwargs={"rows": 200}
    )
    locate_input = inputs.locate_input

    def look(*args: Any, **kwargs: Any) -> Any:
        try:
            return locate_input(*args, **kwargs)
        except inputs.NoInputError:
            if not lands.is_alive() and not lands.finished.is_set():
                lands.start()
            raise

    monkeypatch.setattr(inputs, "locate_input", look)
    try:
        late = run_dag("ct_churn_batch", {"date": "2026-12-05"})
    finally:
        if lands.is_alive():
            lands.join()
    assert set(late.tasks.values()) == {"success"}, late.tasks
    assert lands.finished.is_set(), "the first look found the input: nothing was waited for"
    assert late.xcom["score"]["rows"] == 200
    assert 2 <= late.xcom["locate"]["waited_seconds"] < 20  # found after deferring, before the deadline

    started = time.monotonic()
    missing = run_dag("ct_churn_batch", {"date": "2026-12-06"})
    assert (missing.tasks["locate"], missing.tasks["score"]) == ("skipped", "skipped")
    assert time.monotonic() - started >= 20  # it waited for the whole deadline, then skipped
    assert not (output_root(config) / "date=2026-12-06").exists()


def champion_events() -> list[dict[str, object]]:
    """The extras of the ``ct_churn_champion`` Asset's events, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "ct_churn_champion")
            .order_by(AssetEvent.id)
        )
        return [dict(extra or {}) for extra in session.scalars(query)]
