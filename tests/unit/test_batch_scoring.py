"""Batch scoring without Airflow or MLflow: partitions, schema checks, idempotent writes, dual scoring."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.ct.batch import checks, inputs, partitions, scoring
from include.ct.config import BatchSpec, PipelineConfig
from include.ct.data.extract import batch_files
from include.ct.data.validate import DataValidationError
from include.ct.modeling.pipeline_building import build_pipeline, coerce_features
from include.ct.monitoring.prediction_log import read_prediction_log
from include.ct.registry.served_model import ServedModel
from tools import datagen

DAY = date(2026, 12, 1)


@pytest.fixture
def config(churn: PipelineConfig) -> PipelineConfig:
    spec = BatchSpec(key=["customer_id"], chunk_rows=400)
    return churn.model_copy(
        update={"batch": spec, "model": churn.model.model_copy(update={"params": {"max_iter": 20}})}
    )


def _served(config: PipelineConfig, version: str = "3", seed: int = 0) -> ServedModel:
    frame = datagen.churn_batch(1500, day=1, seed=seed)
    model = build_pipeline(config).fit(coerce_features(config, frame), frame[config.target])
    classes = [int(c) for c in model.classes_]
    return ServedModel(config, version, f"run{version}", datetime.now(UTC), model, classes)


def _model(version: str = "3") -> scoring.ResolvedModel:
    return scoring.ResolvedModel("churn", version, f"run{version}", "champion")


def _land(config: PipelineConfig, day: date, rows: int = 1000, parts: int = 2, seed: int = 5) -> list[Path]:
    folder = partitions.input_root(config) / partitions.partition_name(day)
    folder.mkdir(parents=True, exist_ok=True)
    frame = datagen.churn_batch(rows, day=3, seed=seed).drop(columns=[config.target])
    frame["customer_id"] = np.arange(rows) + 10_000
    paths = []
    size = -(-rows // parts)
    for index, part in enumerate(frame.iloc[i : i + size] for i in range(0, rows, size)):
        paths.append(
            datagen.write_atomically(part, folder / f"part{index}.{'csv' if index % 2 else 'parquet'}")
        )
    return paths


def test_the_day_scored_follows_the_request_then_the_interval_then_the_last_full_day() -> None:
    run_after = datetime(2026, 12, 7, 3, tzinfo=UTC)
    assert partitions.score_date("2026-11-02", None, None, run_after) == date(2026, 11, 2)
    start, end = partitions.day_window(date(2026, 12, 5))
    assert partitions.score_date(None, start, end, run_after) == date(2026, 12, 5)
    assert partitions.score_date(None, None, None, run_after) == date(2026, 12, 6)
    with pytest.raises(partitions.BatchConfigError, match="YYYY-MM-DD"):
        partitions.score_date("yesterday", None, None, run_after)


def test_a_day_is_scored_in_chunks_with_key_version_and_lineage_on_every_row(config: PipelineConfig) -> None:
    _land(config, DAY)
    batch = inputs.locate_input(config, DAY)
    checks.validate_input(config, batch)
    served = _served(config)

    result = scoring.score_day(config, _model(), batch, "scheduled__x", served=served)

    out = pd.read_parquet(result.output)
    assert result.rows == len(out) == 1000 and result.files == 4  # 2 files of 500 rows, chunks of 400
    assert sorted(out["customer_id"]) == list(range(10_000, 11_000))
    assert set(out["model_version"]) == {"3"} and set(out["input_version"]) == {batch.data_version}
    assert set(out["scoring_run_id"]) == {"scheduled__x"} and set(out["model_run_id"]) == {"run3"}
    # exactly what the whole Pipeline predicts on the whole table at once
    rows = pd.concat([inputs.read_batch(Path(f)) for f in batch.files], ignore_index=True)
    expected = served.model.predict_proba(coerce_features(config, rows))[:, 1]
    assert np.array_equal(out.sort_values("customer_id")["probability_1"].to_numpy(), expected)


def test_rescoring_a_day_replaces_its_partition_and_never_duplicates(config: PipelineConfig) -> None:
    _land(config, DAY)
    batch = inputs.locate_input(config, DAY)
    first = scoring.score_day(config, _model("3"), batch, "run-a", served=_served(config, "3"))
    again = scoring.score_day(config, _model("3"), batch, "run-a", served=_served(config, "3"))
    assert pd.read_parquet(first.output).equals(pd.read_parquet(again.output))

    rescored = scoring.score_day(config, _model("4"), batch, "run-b", served=_served(config, "4", seed=9))
    out = pd.read_parquet(rescored.output)
    assert len(out) == 1000 and set(out["model_version"]) == {"4"}
    root = partitions.output_root(config)
    assert [p.name for p in root.iterdir()] == [partitions.partition_name(DAY)]  # no staging left


def test_a_failed_write_leaves_the_published_day_untouched(config: PipelineConfig) -> None:
    _land(config, DAY)
    batch = inputs.locate_input(config, DAY)
    first = scoring.score_day(config, _model(), batch, "run-a", served=_served(config))
    before = pd.read_parquet(first.output)

    def frames():
        yield before.head(10)
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError):
        scoring.write_parquet_day(Path(first.output), frames(), manifest={})
    assert pd.read_parquet(first.output).equals(before)
    assert [p.name for p in Path(first.output).parent.iterdir()] == [Path(first.output).name]


def test_a_day_that_breaks_the_schema_is_quarantined_whole_and_named(config: PipelineConfig) -> None:
    paths = _land(config, DAY)
    bad = pd.read_parquet(paths[0])
    bad.loc[bad.index[3], "plan"] = "platinum"
    bad.to_parquet(paths[0], index=False)
    batch = inputs.locate_input(config, DAY)

    with pytest.raises(DataValidationError) as error:
        checks.validate_input(config, batch)

    message = str(error.value)
    assert (
        "part0.parquet" in message
        and "column 'plan'" in message
        and "expect_column_values_to_be_in_set" in message
    )
    quarantined = sorted(p.name for p in (partitions.data_dir() / "quarantine" / config.name).iterdir())
    assert "part0.parquet" in quarantined and "part1.csv" in quarantined  # the whole day, nothing lost
    assert "part0.parquet.report.html" in quarantined
    assert not batch_files(partitions.input_root(config) / partitions.partition_name(DAY))


def test_a_key_repeated_across_files_is_found_and_named(config: PipelineConfig) -> None:
    paths = _land(config, DAY)
    second = pd.read_csv(paths[1])
    second.loc[second.index[0], "customer_id"] = 10_001  # also in part0
    second.to_csv(paths[1], index=False)

    with pytest.raises(
        DataValidationError,
        match=r"unique key: 1 rows repeat a key, e.g. \['10001 \(also in part0.parquet\)'\]",
    ):
        checks.validate_input(config, inputs.locate_input(config, DAY))


def test_missing_feature_and_missing_key_are_named(config: PipelineConfig) -> None:
    paths = _land(config, DAY, parts=1)
    frame = pd.read_parquet(paths[0]).drop(columns=["customer_id", "tenure_months"])
    frame.to_parquet(paths[0], index=False)
    with pytest.raises(DataValidationError, match="2 missing columns") as error:
        checks.validate_input(config, inputs.locate_input(config, DAY))
    assert "customer_id" in str(error.value) and "tenure_months" in str(error.value)


def test_nothing_to_score_is_a_clear_no_input(config: PipelineConfig) -> None:
    with pytest.raises(inputs.NoInputError, match=r"no \*.csv or \*.parquet file in .*date=2026-12-01"):
        inputs.locate_input(config, DAY)


def test_dual_scoring_logs_both_versions_under_the_batch_key(config: PipelineConfig) -> None:
    _land(config, DAY, rows=600)
    batch = inputs.locate_input(config, DAY)
    challenger = _served(config, "5", seed=3)
    started = datetime.now(UTC)
    for _ in range(2):  # a re-run replaces its log files
        scoring.score_day(
            config,
            _model(),
            batch,
            "run",
            served=_served(config),
            evidence=challenger,
            evidence_model=_model("5"),
        )
    logged = read_prediction_log(config.name, shadow=True)
    assert len(logged) == 1200
    pairs = logged.pivot(index="prediction_id", columns="model_version", values="score")
    assert sorted(pairs.columns) == ["3", "5"] and len(pairs) == 600
    assert set(logged["role"]) == {"batch"}
    assert read_prediction_log(config.name).empty  # not live traffic: the monitor leaves it out
    assert sorted(pairs.index)[:2] == ["10000", "10001"]

    # labels that arrive for the batch keys pair the two versions as live traffic is paired
    from include.ct.monitoring.monitor import labels_dir
    from include.ct.online.evidence import gather

    truth = datagen.churn_batch(600, day=3, seed=5)[[config.target]]
    truth.insert(0, "prediction_id", [str(key) for key in range(10_000, 10_600)])
    labels_dir(config).mkdir(parents=True)
    truth.to_csv(labels_dir(config) / "labels.csv", index=False)
    evidence = gather(config, challenger="5", champion="3", since=started, confidence=0.95)
    assert (evidence.paired_rows, evidence.labelled_pairs, evidence.unmatched_labels) == (600, 600, 0)
    assert evidence.comparison is not None and evidence.comparison.n == 600


def test_a_run_started_by_a_new_champion_says_so_and_its_note_says_what_it_scored() -> None:
    from ct_airflow.run_notes import batch_note, describe_trigger

    payload = {"trigger": "new_champion", "reason": "new champion: v4 (promoted by the gate)"}
    assert describe_trigger("asset_triggered", {}, [payload]) == ("new_champion", payload["reason"])
    assert describe_trigger("asset_triggered", {}, [{"files": ["a.csv"]}])[0] == "data_arrival"
    scored = {"rows": 500, "day": "2026-12-01", "model_version": "4", "input_version": "ab", "output": "o"}
    assert batch_note(scored) == "Scored: 500 rows of 2026-12-01 by v4 (input ab) -> o"
    waited = batch_note(scored, waited_seconds=183.4)
    assert waited == "Scored: 500 rows of 2026-12-01 by v4 (input ab, landed after a 183 s wait) -> o"


def test_batch_config_errors_name_the_key(churn: PipelineConfig, tmp_path: Path) -> None:
    import yaml

    from include.ct.config import BUNDLED_PIPELINES_DIR, ConfigError, load_pipeline_config

    def load(batch: dict[str, object]) -> PipelineConfig:
        raw = yaml.safe_load((BUNDLED_PIPELINES_DIR / "churn.yaml").read_text()) | {"batch": batch}
        path = tmp_path / "churn.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_pipeline_config(path)

    assert load({"key": ["customer_id"]}).batch.dual_scores is True  # type: ignore[union-attr]
    cases = [
        ({"key": ["customer_id"], "engin": "spark"}, "batch.engin", "unknown key"),
        ({}, "batch.key", "Field required"),
        ({"key": []}, "batch.key", "at least one key column"),
        ({"key": ["plan"]}, "batch.key", "must not be a feature or the target"),
        ({"key": ["id"], "output": {"type": "sql"}}, "batch.output", "needs 'conn_id' and 'table'"),
        (
            {"key": ["id"], "output": {"type": "sql", "conn_id": "c", "table": "x; drop"}},
            "batch.output",
            "plain",
        ),
        (
            {"key": ["id"], "engine": "spark", "output": {"type": "sql", "conn_id": "c", "table": "t"}},
            "batch.output.type",
            "Parquet",
        ),
        (
            {"key": ["id"], "engine": "spark", "dual_scoring": True},
            "batch.dual_scoring",
            "in_process engine only",
        ),
    ]
    for batch, key, problem in cases:
        with pytest.raises(ConfigError) as error:
            load(batch)
        assert (error.value.key, problem in error.value.problem) == (key, True), error.value


def test_a_file_changed_after_validation_is_not_scored(config: PipelineConfig) -> None:
    paths = _land(config, DAY)
    batch = inputs.locate_input(config, DAY)
    checks.validate_input(config, batch)
    frame = pd.read_parquet(paths[0])
    frame.loc[frame.index[0], "tenure_months"] = 599
    frame.to_parquet(paths[0], index=False)
    with pytest.raises(inputs.InputChangedError, match="changed after validation"):
        scoring.score_day(config, _model(), batch, "run", served=_served(config))
    assert not partitions.output_root(config).exists()


def test_csv_keys_keep_their_text_and_an_unreadable_file_is_reported_not_crashed(
    config: PipelineConfig,
) -> None:
    folder = partitions.input_root(config) / partitions.partition_name(DAY)
    folder.mkdir(parents=True)
    frame = datagen.churn_batch(300, day=3).drop(columns=[config.target])
    frame["customer_id"] = [f"{i:05d}" for i in range(300)]
    frame.iloc[:150].to_csv(folder / "a.csv", index=False)
    frame.iloc[149:].to_csv(folder / "b.csv", index=False)  # row 149 repeats across files
    (folder / "c.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataValidationError) as error:
        checks.validate_input(config, inputs.locate_input(config, DAY))
    assert "'00149 (also in a.csv)'" in str(error.value)  # leading zeros kept: keys compare as text
    assert "file 'c.parquet': column '(file)' rule readable Parquet" in str(error.value)
