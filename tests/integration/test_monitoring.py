"""Monitoring against a real MLflow server: drift and decay trigger retraining once, with a cooldown.

One story on one registry: a champion serves undrifted traffic (nothing happens), drifted traffic
(the monitor DAG starts exactly one ct_churn run naming the drifted features, then the cooldown
holds), and later labels that reveal decay (retraining again once the cooldown is over).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.extract import extract
from include.ct.data.validate import validate_snapshot
from include.ct.modeling.train import train_challenger
from include.ct.monitoring.monitor import assess
from include.ct.monitoring.prediction_log import PredictionLog
from include.ct.registry import registry
from include.ct.registry.deploy import deploy_version, register_candidate
from include.ct.registry.served_model import json_records, load_served_model
from testbed.services import MlflowServer
from tests.helpers.airflow_runs import run_dag
from tools import datagen

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]


@pytest.fixture(scope="module")
def churn(mlflow_server: MlflowServer, data_dir: Path) -> PipelineConfig:
    """The bundled churn pipeline with a first champion, trained through the library."""
    config = find_pipeline_config("churn")
    datagen.write_batch(config, rows=4000, day=1)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage("churn", "ct_churn", "monitor_setup", snapshot.data_version)
    trained = train_challenger(config, lineage)
    candidate = register_candidate(
        config, trained.run_id, trained.test_path, decision="setup", lineage=lineage
    )
    deploy_version(config, candidate.version, trained.test_path, reason="setup", service=None)
    return config


def serve_traffic(config: PipelineConfig, data_dir: Path, frame: pd.DataFrame, tag: str) -> list[str]:
    """Predict ``frame`` with the champion and write it to the prediction log, as the service does."""
    served = load_served_model(config)
    records = json_records(config, frame)
    labels, probabilities = served.predict_records(records)
    ids = [f"{tag}-{i}" for i in range(len(records))]
    log = PredictionLog(data_dir / "predictions", flush_seconds=0.1)
    log.start()
    log.append(config.name, served.version, datetime.now(UTC), records, ids, labels, probabilities)
    log.close()
    return ids


def retrain_runs() -> list[object]:
    from airflow.models.dagrun import DagRun

    return [
        run for run in DagRun.find(dag_id="ct_churn") if (run.conf or {}).get("trigger") in ("drift", "decay")
    ]


def test_undrifted_traffic_triggers_nothing(churn: PipelineConfig, data_dir: Path) -> None:
    serve_traffic(churn, data_dir, datagen.churn_batch(800, day=2), "calm")
    report = assess(churn)
    assert report.traffic_rows == 800
    assert report.drifted == {} and not report.decay and not report.retrain, report.reason
    assert report.reason == "no drift and no decay"


def test_drift_triggers_exactly_one_retraining_run_naming_the_features(
    churn: PipelineConfig, data_dir: Path
) -> None:
    serve_traffic(churn, data_dir, datagen.churn_batch(3000, day=3, drift=1.0), "drifted")
    result = run_dag("ct_churn_monitor")
    assert result.state == "success", result.tasks
    report = result.xcom["assess"]
    assert report["retrain"] is True and report["trigger"] == "drift"
    drifted = report["drifted"]["traffic"]
    assert {"contract", "support_calls"} <= set(drifted)
    assert all(name in report["reason"] for name in drifted)
    assert result.tasks["retrain"] == "success"
    (triggered,) = retrain_runs()
    assert triggered.conf["reason"] == report["reason"]  # type: ignore[attr-defined]
    assert triggered.conf["force"] is True  # type: ignore[attr-defined]

    # The breach persists, but the cooldown holds: no second run.
    again = run_dag("ct_churn_monitor")
    assert again.xcom["assess"]["suppressed_by_cooldown"] is True
    assert again.tasks["retrain"] == "skipped"
    assert len(retrain_runs()) == 1


def test_labels_that_reveal_decay_trigger_retraining_after_the_cooldown(
    churn: PipelineConfig, data_dir: Path
) -> None:
    # Same customers as in training, but churn now depends on them differently (concept drift).
    changed = datagen.churn_batch(1500, day=4, label_drift=1.0, seed=3)
    ids = serve_traffic(churn, data_dir, changed, "decayed")
    labels = data_dir / "labels" / "churn"
    labels.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"prediction_id": ids, "churned": changed["churned"]}).to_csv(
        labels / "day4.csv", index=False
    )

    within_cooldown = assess(churn)
    assert within_cooldown.decay and within_cooldown.suppressed_by_cooldown and not within_cooldown.retrain
    later = assess(churn, now=datetime.now(UTC) + timedelta(hours=25))
    assert later.labelled_rows == 1500
    assert later.live_metric is not None and later.champion_metric is not None
    assert later.live_metric < later.champion_metric - churn.monitoring.max_metric_drop
    assert later.retrain and later.trigger == "decay"
    assert "live roc_auc" in later.reason
