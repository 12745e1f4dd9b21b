"""Batch scoring against a real MLflow server: the alias resolved once, and Spark local mode
writing exactly the rows the in-process engine writes."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from include.ct.batch import checks, inputs, scoring
from include.ct.config import find_pipeline_config
from include.ct.data.extract import extract
from include.ct.data.validate import validate_snapshot
from include.ct.modeling.train import train_challenger
from include.ct.registry import registry
from include.ct.registry.deploy import deploy_version, register_candidate
from testbed.services import MlflowServer
from tools import datagen

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 1)
CSV_DAY = date(2026, 12, 2)


def _train_and_register(config, run_id: str, seed: int) -> tuple[str, str]:
    datagen.write_batch(config, rows=1500, seed=seed)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id=run_id, data_version=snapshot.data_version
    )
    trained = train_challenger(config, lineage)
    candidate = register_candidate(
        config, trained.run_id, trained.test_path, decision="promote: test", lineage=lineage
    )
    return candidate.version, trained.test_path


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


def test_the_alias_is_resolved_once_and_spark_writes_the_same_rows(
    mlflow_server: MlflowServer, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = find_pipeline_config("churn")
    with pytest.raises(scoring.NoChampionError, match="has no 'champion' yet"):
        scoring.resolve_champion(config)

    first, test_path = _train_and_register(config, "manual__one", seed=1)
    deploy_version(config, first, test_path, reason="test", service=None)
    second, _ = _train_and_register(config, "manual__two", seed=2)

    datagen.write_scoring_day(config, DAY, rows=3000, seed=4)
    batch = inputs.locate_input(config, DAY)
    checks.validate_input(config, batch)
    resolved = scoring.resolve_champion(config)
    assert resolved.version == first

    registry.set_champion_alias(config, second)  # promoted while the run is under way
    result = scoring.score_day(config, resolved, batch, "scheduled__day")
    in_process = _sorted(pd.read_parquet(result.output))
    assert set(in_process["model_version"]) == {first} and len(in_process) == 3000
    assert scoring.resolve_champion(config).version == second  # the next run takes the new one

    from ct_airflow.operators.batch import submit_spark_job
    from include.ct.batch.partitions import MANIFEST, work_dir
    from include.ct.batch.spark_job import write_request

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the driver's servers listen on loopback only
    request = write_request(work_dir(config, DAY) / "spark_request.json", resolved, batch, "scheduled__day")
    submit_spark_job(config, work_dir(config, DAY) / "spark_request.json", name="ct_churn_batch test")

    spark_result = json.loads(Path(request["result"]).read_text())
    on_spark = _sorted(pd.read_parquet(spark_result["output"]))
    assert spark_result["rows"] == 3000
    assert json.loads((Path(spark_result["output"]) / MANIFEST).read_text())["engine"] == "spark"
    pd.testing.assert_frame_equal(on_spark, in_process, check_dtype=False)
    assert (on_spark["probability_1"].to_numpy() == in_process["probability_1"].to_numpy()).all()

    # CSV input too: Spark infers the types, the shared scoring function coerces them to the schema
    datagen.write_scoring_day(config, CSV_DAY, rows=500, seed=5, fmt="csv")
    csv_batch = inputs.locate_input(config, CSV_DAY)
    expected = _sorted(pd.read_parquet(scoring.score_day(config, resolved, csv_batch, "r").output))
    request = write_request(work_dir(config, CSV_DAY) / "spark_request.json", resolved, csv_batch, "r")
    submit_spark_job(config, work_dir(config, CSV_DAY) / "spark_request.json", name="ct_churn_batch csv")
    on_spark = _sorted(pd.read_parquet(json.loads(Path(request["result"]).read_text())["output"]))
    pd.testing.assert_frame_equal(on_spark, expected, check_dtype=False)
