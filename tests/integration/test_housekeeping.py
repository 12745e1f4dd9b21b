"""Housekeeping against a real MLflow server: what stays, what goes, a dry run, a rollback after it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.extract import accepted_versions, extract
from include.ct.data.validate import validate_snapshot
from include.ct.housekeeping.registry_cleanup import BACKEND_STORE_ENV
from include.ct.housekeeping.run import housekeep, record
from include.ct.modeling.train import train_challenger
from include.ct.registry import registry
from include.ct.registry.deploy import deploy_version, register_candidate, rollback_champion
from include.ct.storage import pipeline_paths
from testbed.services import MlflowServer
from tools import datagen

pytestmark = pytest.mark.integration


def _config() -> PipelineConfig:
    churn = find_pipeline_config("churn")
    return churn.model_copy(
        update={
            "training": churn.training.model_copy(update={"window": 2}),
            "retention": churn.retention.model_copy(update={"model_versions_keep": 2, "mlflow_gc_days": 0}),
        }
    )


def _version(config: PipelineConfig, number: int, *, deploy: bool) -> tuple[str, str]:
    datagen.write_batch(config, rows=800, seed=number)
    snapshot = extract(config)
    validate_snapshot(config, snapshot)
    lineage = registry.Lineage(
        pipeline="churn", dag_id="ct_churn", run_id=f"manual__{number}", data_version=snapshot.data_version
    )
    trained = train_challenger(config, lineage)
    candidate = register_candidate(
        config, trained.run_id, trained.test_path, decision="promote: test", lineage=lineage
    )
    if deploy:
        deploy_version(config, candidate.version, trained.test_path, reason=f"v{number}", service=None)
    return candidate.version, trained.run_id


def test_housekeeping_keeps_the_champion_its_rollback_target_and_their_data(
    mlflow_server: MlflowServer, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    made = [_version(config, n, deploy=n <= 4) for n in range(1, 6)]
    runs = {version: run for version, run in made}
    client = MlflowClient(tracking_uri=mlflow_server.url)
    assert client.get_model_version_by_alias("churn", "champion").version == "4"
    snapshots = accepted_versions(config)
    assert len(snapshots) == 5

    dry = housekeep(config, dry_run=True)
    assert dry.protected == {"4": "the champion", "3": "the champion's rollback target"}
    planned = {(r.kind, Path(r.target).name) for r in dry.removals}
    # v5, v4 are the newest two; v3 is the rollback target; v1, v2 go
    assert {("model_version", "1"), ("model_version", "2")} <= planned
    # the window is the newest 2 snapshots; v4 trained on 3-4 and v3 on 2-3: only the first goes
    assert {name for kind, name in planned if kind == "snapshot"} == {snapshots[0]}
    assert len(client.search_model_versions("name = 'churn'")) == 5  # a dry run changes nothing
    assert (pipeline_paths(config).snapshots / snapshots[0]).exists()

    monkeypatch.setenv(BACKEND_STORE_ENV, f"sqlite:///{mlflow_server.root / 'mlflow.db'}")
    done = housekeep(config)
    url = record(config, done)
    assert url and url.startswith(mlflow_server.url)
    assert sorted(v.version for v in client.search_model_versions("name = 'churn'")) == ["3", "4", "5"]
    for version in ("1", "2"):  # their runs were deleted, then purged by mlflow gc
        with pytest.raises(Exception, match=r"not found|RESOURCE_DOES_NOT_EXIST|No Run"):
            client.get_run(runs[version])
    assert accepted_versions(config) == snapshots[1:]
    assert not (pipeline_paths(config).snapshots / snapshots[0]).exists()
    assert done.bytes_freed > 0 and "mlflow gc purged" in done.notes[0]
    housekeeping_run = client.search_runs(
        [registry.ensure_experiment(config)], "tags.`ct.kind` = 'housekeeping'"
    )
    assert housekeeping_run[0].data.metrics["bytes_freed"] == done.bytes_freed

    # the rollback target survived with what its checks need: a rollback still works
    rolled = rollback_champion(config, None, reason="after housekeeping", service=None)
    assert (rolled["from"], rolled["to"]) == ("4", "3")
    assert client.get_model_version_by_alias("churn", "champion").version == "3"
    # and training still finds its window
    _version(config, 6, deploy=False)


def test_housekeeping_that_cannot_reach_mlflow_removes_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    quarantined = pipeline_paths(config).quarantine / "ancient.csv"
    quarantined.parent.mkdir(parents=True, exist_ok=True)
    quarantined.write_text("a\n1\n")
    import os

    os.utime(quarantined, (0, 0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception):  # noqa: B017 - whichever error MLflow raises, nothing is removed
        housekeep(config)
    assert quarantined.exists()
