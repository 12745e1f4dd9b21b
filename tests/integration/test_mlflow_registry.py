"""Registry access against a real MLflow tracking server: idempotent runs, versions and alias."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from include.ct.config import find_pipeline_config
from include.ct.data.extract import accepted_versions, extract
from include.ct.data.validate import validate_snapshot
from include.ct.modeling.evaluate import evaluate_challenger
from include.ct.modeling.train import train_challenger
from include.ct.monitoring.monitor import MonitorReport
from include.ct.monitoring.monitor import record as monitor_record
from include.ct.registry import registry
from include.ct.registry.deploy import DeployResult, deploy_version, register_candidate
from include.ct.registry.history import pipeline_history
from testbed.services import MlflowServer
from tools import datagen

pytestmark = pytest.mark.integration


def test_retries_never_duplicate_runs_versions_or_alias_moves(
    mlflow_server: MlflowServer, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = find_pipeline_config("churn")
    datagen.write_batch(config, rows=2000)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id="manual__retry", data_version=snapshot.data_version
    )
    first = train_challenger(config, lineage)
    retried = train_challenger(config, lineage)
    assert retried.run_id == first.run_id
    assert first.run_url and first.run_url.startswith(mlflow_server.url)

    def promote(run_id: str, test_path: str, lineage: registry.Lineage) -> DeployResult:
        candidate = register_candidate(config, run_id, test_path, decision="promote: test", lineage=lineage)
        assert candidate.infra_check["ok"] is True
        return deploy_version(config, candidate.version, test_path, reason="test", service=None)

    mlflow_logger = logging.getLogger("mlflow")  # it does not propagate to the root logger
    mlflow_logger.addHandler(caplog.handler)
    try:
        promoted = promote(first.run_id, first.test_path, lineage)
    finally:
        mlflow_logger.removeHandler(caplog.handler)
    again = promote(first.run_id, first.test_path, lineage)
    assert (promoted.version, promoted.moved) == ("1", True)
    assert (again.version, again.moved) == ("1", False)
    client = MlflowClient(tracking_uri=mlflow_server.url)
    # The version is the run's logged model, registered by the model's own URI: MLflow needs no
    # search through the experiment's models and warns of nothing.
    version = client.get_model_version("churn", "1")
    model_ids = [output.model_id for output in client.get_run(first.run_id).outputs.model_outputs]
    assert model_ids == [registry.logged_model_id(first.run_id)]
    assert (version.run_id, version.source) == (first.run_id, f"models:/{model_ids[0]}")
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [message for message in warned if "CT_SERVING_URL" not in message]
    assert len(client.search_model_versions("name = 'churn'")) == 1
    assert client.get_model_version_by_alias("churn", "champion").version == "1"
    assert promoted.url == f"{mlflow_server.url}/#/models/churn/versions/1"

    # A second model takes over and remembers whom it replaced.
    other = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id="manual__second", data_version=snapshot.data_version
    )
    second = train_challenger(config, other)
    assert second.run_id != first.run_id
    replaced = promote(second.run_id, second.test_path, other)
    assert (replaced.version, replaced.previous_champion) == ("2", "1")
    champion = client.get_model_version_by_alias("churn", "champion")
    assert champion.version == "2"
    assert champion.tags["ct.previous_champion"] == "1"
    assert registry.get_champion(config).version == "2"  # type: ignore[union-attr]


def test_after_a_concept_change_the_challenger_trains_on_the_new_snapshot_alone(
    mlflow_server: MlflowServer, data_dir: Path
) -> None:
    """``training.recent_windows``: the window that best predicts the newest rows is trained,
    and the MLflow run says which snapshots it used and why."""
    churn = find_pipeline_config("churn")
    config = churn.model_copy(
        update={
            "training": churn.training.model_copy(update={"recent_windows": [1]}),
            "model": churn.model.model_copy(update={"params": {**churn.model.params, "max_iter": 40}}),
        }
    )
    versions = []
    for day, flip in ((1, 0.0), (2, 0.0), (3, 0.0), (4, 1.0)):
        datagen.write_batch(config, day=day, rows=1500, seed=5, concept_flip=flip)
        snapshot = extract(config)
        validate_snapshot(config, snapshot)
        versions.append(snapshot.data_version)
    lineage = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id="manual__flip", data_version=versions[-1]
    )
    trained = train_challenger(config, lineage)

    available = len(accepted_versions(config))  # the module's data folder holds earlier snapshots too
    run = MlflowClient(tracking_uri=mlflow_server.url).get_run(trained.run_id)
    assert run.data.tags["ct.training_versions"] == versions[-1]
    assert run.data.tags["ct.window_choice"].startswith(f"newest 1 of {available} snapshots"), run.data.tags
    assert (run.data.params["snapshots"], run.data.params["snapshots_available"]) == ("1", str(available))
    assert run.data.metrics["window_probe_1"] > run.data.metrics[f"window_probe_{available}"] + 0.1
    assert trained.train_rows + trained.test_rows == 1500  # the split comes from that snapshot only
    assert train_challenger(config, lineage).run_id == trained.run_id  # a retry reuses the run


def test_history_reads_champions_gate_decisions_and_drift_back(
    mlflow_server: MlflowServer, data_dir: Path
) -> None:
    """The CT view's records come from what the steps logged: the champion with why and from which
    run, each gate decision with its numbers, and a monitoring pass's drift per source."""
    config = find_pipeline_config("churn")
    datagen.write_batch(config, rows=1500, seed=11)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id="manual__history", data_version=snapshot.data_version
    )
    trained = train_challenger(config, lineage)
    decision = evaluate_challenger(config, trained.run_id, trained.test_path, min_improvement=-1.0)
    candidate = register_candidate(
        config, trained.run_id, trained.test_path, decision="promote", lineage=lineage
    )
    deploy_version(config, candidate.version, trained.test_path, reason="history test", service=None)
    report = MonitorReport(
        pipeline="churn", checked_at="2026-12-06T10:00:00+00:00", champion=candidate.version
    )
    report.scores = {
        "traffic": {"tenure_months": 0.31},
        "new_batches": {"plan": 0.02, "monthly_fee": 0.5},
    }
    report.reason = "drift in traffic"
    monitor_record(config, report, lineage)

    history = pipeline_history(config)
    assert history.champion == candidate.version
    newest = history.champions[0]
    assert (newest.version, newest.current, newest.state) == (candidate.version, True, "champion")
    assert newest.reason == "history test" and newest.airflow_run_id == "manual__history"
    assert newest.url and newest.url.endswith(f"/versions/{candidate.version}")
    gate = next(run for run in history.runs if run.run_id == trained.run_id)
    assert gate.decision == ("promote" if decision.promote else "reject")
    assert gate.challenger is not None and gate.data_version == snapshot.data_version
    (latest,) = history.monitoring[:1]
    assert latest.drift == {
        "new_batches": {"monthly_fee": 0.5, "plan": 0.02},
        "traffic": {"tenure_months": 0.31},
    }
    assert latest.reason == "drift in traffic"
    assert all(run.run_id != latest.run_id for run in history.runs)  # monitoring passes are not gates
