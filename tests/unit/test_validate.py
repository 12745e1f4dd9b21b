"""Validation: the GX suite catches schema skew, quarantines the batch and names the rule."""

from __future__ import annotations

import gc
import json
import pathlib

import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.data.extract import accepted_versions, extract
from include.ct.data.validate import (
    DataValidationError,
    build_expectation_suite,
    validate_frame,
    validate_snapshot,
)
from include.ct.storage import pipeline_paths
from tools import datagen


def test_suite_covers_the_schema(churn: PipelineConfig) -> None:
    suite = build_expectation_suite(churn)
    kinds = {(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations}
    assert ("expect_table_columns_to_match_set", None) in kinds
    assert ("expect_column_values_to_be_between", "tenure_months") in kinds
    assert ("expect_column_values_to_be_in_set", "plan") in kinds
    assert ("expect_column_values_to_not_be_null", "support_calls") in kinds
    assert ("expect_column_values_to_not_be_null", "monthly_fee") not in kinds  # nullable


def test_suite_holds_each_rule_once(churn: PipelineConfig) -> None:
    # The timestamp is also a required feature here: its not-null rule must not appear twice.
    suite = build_expectation_suite(churn.model_copy(update={"timestamp": "support_calls"}))
    rules = [(e.expectation_type, str(e.configuration.kwargs)) for e in suite.expectations]
    assert len(rules) == len(set(rules))
    not_null = [
        getattr(e, "column", None) for e in suite.expectations if e.expectation_type.endswith("not_be_null")
    ]
    assert not_null.count("support_calls") == 1


def test_good_batch_is_accepted_and_archived(churn: PipelineConfig) -> None:
    datagen.write_batch(churn, rows=300)
    snapshot = extract(churn)
    outcome = validate_snapshot(churn, snapshot)
    assert outcome.success
    paths = pipeline_paths(churn)
    assert not list(paths.landing.glob("*.csv"))
    assert (paths.archive / snapshot.data_version / "day_0001.csv").exists()
    assert accepted_versions(churn) == [snapshot.data_version]
    report_dir = paths.reports / snapshot.data_version
    assert (report_dir / "data_docs" / "index.html").exists()  # GX Data Docs beside our report
    assert "data_docs/index.html" in (report_dir / "report.html").read_text()
    # A retry after acceptance changes nothing.
    assert validate_snapshot(churn, snapshot).success


def test_each_broken_rule_is_reported_once_by_column_and_rule(churn: PipelineConfig) -> None:
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    frame = datagen.churn_batch(300, day=1)[columns]
    frame.loc[:2, "tenure_months"] = -4
    frame.loc[3:5, "plan"] = "platinum"
    frame.loc[6, "support_calls"] = None
    frame.loc[7:8, "monthly_fee"] = float("inf")
    report = validate_frame(churn, frame, "day_0001.csv")
    assert {(f.column, f.rule) for f in report.failures} == {
        ("tenure_months", "expect_column_values_to_be_between"),
        ("plan", "expect_column_values_to_be_in_set"),
        ("monthly_fee", "expect_column_values_to_be_between"),
        ("support_calls", "expect_column_values_to_be_in_type_list"),  # None made it float
        ("support_calls", "expect_column_values_to_not_be_null"),
    }


def test_a_validated_batch_is_not_kept_in_memory(churn: PipelineConfig, tmp_path: pathlib.Path) -> None:
    # GX keeps its last context for the process; the batch it validated must not stay with it,
    # or a snapshot's batches (and the value-skew read after them) would pile up in a task.
    rows = 517  # a length no other frame of this test has
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    frame = datagen.churn_batch(rows, day=1)[columns]
    assert validate_frame(churn, frame, "day_0001.csv", tmp_path / "docs").success
    del frame
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) == rows]
    assert not alive


@pytest.mark.parametrize(
    ("breakage", "column", "rule"),
    [
        ("missing_column", "support_calls", "expect_table_columns_to_match_set"),
        ("unexpected_column", "debug_flag", "expect_table_columns_to_match_set"),
        ("wrong_type", "tenure_months", "expect_column_values_to_be_in_type_list"),
        ("out_of_range", "tenure_months", "expect_column_values_to_be_between"),
        ("out_of_range", "plan", "expect_column_values_to_be_in_set"),
    ],
)
def test_bad_batch_is_quarantined_with_a_named_rule(
    churn: PipelineConfig, breakage: str, column: str, rule: str
) -> None:
    good = datagen.write_batch(churn, rows=300)
    bad = datagen.write_batch(churn, rows=300, breakage=breakage)
    snapshot = extract(churn)
    with pytest.raises(DataValidationError) as caught:
        validate_snapshot(churn, snapshot)
    message = str(caught.value)
    assert f"file '{bad.name}'" in message
    assert f"column '{column}" in message or column in message
    assert rule in message
    paths = pipeline_paths(churn)
    assert (paths.quarantine / bad.name).exists()
    report = json.loads((paths.quarantine / f"{bad.name}.report.json").read_text())
    assert report["file"] == bad.name
    assert any(f["rule"] == rule for f in report["failures"])
    assert (paths.quarantine / f"{bad.name}.report.html").read_text().count(rule) >= 1
    # The good batch is not lost: it waits in the landing zone for the next run.
    assert good.exists()
    assert accepted_versions(churn) == []


def test_unreadable_batch_is_quarantined(churn: PipelineConfig) -> None:
    landing = pipeline_paths(churn).landing
    landing.mkdir(parents=True)
    (landing / "day_0001.parquet").write_bytes(b"garbage")
    with pytest.raises(DataValidationError, match="rule readable"):
        validate_snapshot(churn, extract(churn))
    assert (pipeline_paths(churn).quarantine / "day_0001.parquet").exists()


def _fees_with_nulls_and_two_out_of_range(churn: PipelineConfig) -> pd.DataFrame:
    """300 churn rows whose nullable monthly_fee has 40 nulls and two values out of range."""
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    frame = datagen.churn_batch(300, day=1)[columns]
    frame.loc[frame.index[:40], "monthly_fee"] = None
    frame.loc[frame.index[[50, 60]], "monthly_fee"] = [-5.0, 2500.0]
    return frame


def test_complete_result_format_still_checks_a_nullable_column(
    churn: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # COMPLETE asks GX for the offending rows' index too: the same failure, described the same.
    from include.ct.data import validate

    monkeypatch.setattr(validate, "RESULT_FORMAT", {"result_format": "COMPLETE"})
    frame = _fees_with_nulls_and_two_out_of_range(churn)
    [failure] = validate_frame(churn, frame, "day_0001.csv").failures
    assert (failure.column, failure.rule) == ("monthly_fee", "expect_column_values_to_be_between")
    assert "2 of 300 values" in failure.detail


def test_range_failures_on_a_nullable_column_name_the_offending_values(
    churn: PipelineConfig, tmp_path: pathlib.Path
) -> None:
    frame = _fees_with_nulls_and_two_out_of_range(churn)
    report = validate_frame(churn, frame, "day_0001.csv", tmp_path / "docs")
    [failure] = report.failures
    assert (failure.column, failure.rule) == ("monthly_fee", "expect_column_values_to_be_between")
    assert "2 of 300 values" in failure.detail
    assert "[-5.0, 2500.0]" in failure.detail
