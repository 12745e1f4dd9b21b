"""Validation: the GX suite catches schema skew, quarantines the batch and names the rule."""

from __future__ import annotations

import gc
import json
import pathlib

import pandas as pd
import pytest

from include.ct import datagen
from include.ct.config import PipelineConfig
from include.ct.extract import accepted_versions, extract
from include.ct.storage import pipeline_paths
from include.ct.validate import (
    BatchReport,
    DataValidationError,
    build_expectation_suite,
    column_scoped_data_source,
    validate_frame,
    validate_snapshot,
)


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


def test_configurations_built_once_change_no_result(
    churn: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    from include.ct import validate

    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    frame = datagen.churn_batch(300, day=1)[columns]
    frame.loc[:2, "tenure_months"] = -4
    frame.loc[3:5, "plan"] = "platinum"
    frame.loc[6, "support_calls"] = None
    frame.loc[7:8, "monthly_fee"] = float("inf")
    memoised = validate_frame(churn, frame, "day_0001.csv")
    monkeypatch.setattr(validate, "_configurations_built_once", contextlib.nullcontext)
    assert validate_frame(churn, frame, "day_0001.csv") == memoised
    assert {(f.column, f.rule) for f in memoised.failures} == {
        ("tenure_months", "expect_column_values_to_be_between"),
        ("plan", "expect_column_values_to_be_in_set"),
        ("monthly_fee", "expect_column_values_to_be_between"),
        ("support_calls", "expect_column_values_to_be_in_type_list"),  # None made it float
        ("support_calls", "expect_column_values_to_not_be_null"),
    }


def test_an_expectation_builds_its_configuration_once_only_inside_the_block(churn: PipelineConfig) -> None:
    from include.ct.validate import _configurations_built_once

    [expectation, *_] = build_expectation_suite(churn).expectations
    assert expectation.configuration is not expectation.configuration  # GX's own property
    with _configurations_built_once():
        assert expectation.configuration is expectation.configuration
        with _configurations_built_once():  # nested: a memo of its own
            inner = expectation.configuration
        assert expectation.configuration is not inner
    assert expectation.configuration is not expectation.configuration
    assert expectation.configuration == inner


@pytest.mark.parametrize("fingerprint", [None, "ab" * 32])
def test_a_validated_batch_is_not_kept_in_memory(
    churn: PipelineConfig, tmp_path: pathlib.Path, fingerprint: str | None
) -> None:
    # GX keeps its last context for the process; the batch it validated must not stay with it,
    # or a snapshot's batches (and the value-skew read after them) would pile up in a task.
    rows = 517  # a length no other frame of this test has
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    frame = datagen.churn_batch(rows, day=1)[columns]
    assert validate_frame(churn, frame, "day_0001.csv", tmp_path / "docs", fingerprint=fingerprint).success
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


def test_column_rules_get_their_column_and_table_rules_the_batch() -> None:
    # GX's pandas engine filters a column rule's whole domain through the column's non-null mask:
    # scoped to the column, a rule on a nullable column no longer copies every other column.
    engine = column_scoped_data_source().execution_engine_override()
    frame = pd.DataFrame({"fee": [1.0, None, 3.0], "plan": ["basic", "plus", None], "calls": [1, 2, 3]})
    engine.load_batch_data("batch", frame)
    assert list(engine.get_domain_records({"column": "fee"}).columns) == ["fee"]
    assert list(engine.get_domain_records({}).columns) == ["fee", "plan", "calls"]
    # A row condition still filters on any column before the rule's column is picked.
    kept = engine.get_domain_records(
        {"column": "fee", "row_condition": 'plan == "basic"', "condition_parser": "pandas"}
    )
    assert kept.to_dict("list") == {"fee": [1.0]}


def test_a_nullable_column_rule_reads_only_its_column_for_its_examples() -> None:
    # GX reads a column rule's domain again for its unexpected examples; that read must be
    # scoped to the column too, and still line up with the rows that broke the rule.
    from great_expectations.core.metric_domain_types import MetricDomainTypes

    engine = column_scoped_data_source().execution_engine_override()
    frame = pd.DataFrame({"fee": [1.0, None, 3.0], "plan": ["basic", "plus", None]})
    engine.load_batch_data("batch", frame)
    _, compute, accessor = engine.get_compute_domain({"column": "fee"}, MetricDomainTypes.COLUMN)
    assert accessor == {"column": "fee"}
    assert list(engine.get_domain_records(compute).columns) == ["fee"]
    assert list(engine.get_domain_records({**compute, **accessor}).columns) == ["fee"]  # GX merges them
    _, table, _ = engine.get_compute_domain({}, MetricDomainTypes.TABLE)
    assert list(engine.get_domain_records(table).columns) == ["fee", "plan"]


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
    # COMPLETE asks GX for the offending rows' index too, through a metric that merges the
    # compute and accessor domains: the scoped column must not make those collide.
    from include.ct import validate

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


def test_a_known_fingerprint_replaces_gx_hashing_the_batch() -> None:
    from great_expectations.core.batch_spec import RuntimeDataBatchSpec

    from include.ct.validate import FINGERPRINT_ATTR

    engine = column_scoped_data_source().execution_engine_override()
    frame = pd.DataFrame({"fee": [1.0, 2.0]})
    hashed = engine.get_batch_data_and_markers(RuntimeDataBatchSpec(batch_data=frame.copy()))[1]
    assert len(hashed["pandas_data_fingerprint"]) == 32  # GX's own MD5 of the rows
    frame.attrs[FINGERPRINT_ATTR] = "ab" * 32
    data, markers = engine.get_batch_data_and_markers(RuntimeDataBatchSpec(batch_data=frame))
    assert markers["pandas_data_fingerprint"] == "ab" * 32
    assert data.dataframe["fee"].tolist() == [1.0, 2.0]
    assert FINGERPRINT_ATTR not in data.dataframe.attrs  # not copied along into every GX operation


def test_validate_snapshot_fingerprints_each_batch_by_its_file(
    churn: PipelineConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from include.ct.validate import SuiteRunner

    seen: list[str | None] = []
    original = SuiteRunner.validate

    def spy(self: SuiteRunner, *args: object, fingerprint: str | None = None) -> BatchReport:
        seen.append(fingerprint)
        return original(self, *args, fingerprint=fingerprint)  # type: ignore[arg-type]

    monkeypatch.setattr(SuiteRunner, "validate", spy)
    datagen.write_batch(churn, day=1, rows=300)
    datagen.write_batch(churn, day=2, rows=300)
    snapshot = extract(churn)
    assert validate_snapshot(churn, snapshot).success
    assert seen == [batch.sha256 for batch in snapshot.batches]
