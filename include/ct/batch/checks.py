"""Validate one day's scoring input with the pipeline's GX schema suite, chunk by chunk.

A day that breaks the schema, or repeats a key, is quarantined whole (every file, with its
report) and nothing of it is scored: a partial day would look complete downstream.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from include.ct.batch.inputs import BatchInput, iter_chunks
from include.ct.batch.partitions import batch_spec
from include.ct.config import PipelineConfig
from include.ct.data.extract import UnreadableBatchError
from include.ct.data.validate import (
    BatchReport,
    DataValidationError,
    RuleFailure,
    SuiteRunner,
    ValidationOutcome,
    build_scoring_suite,
    failure_message,
    quarantine_batch,
    write_report,
)
from include.ct.storage import pipeline_paths

log = logging.getLogger(__name__)

UNIQUE_KEY_RULE = "unique key"
EXAMPLES = 5


def repeated_hashes(parts: list[np.ndarray]) -> np.ndarray:
    """The hashes that occur more than once: candidates for a repeated key, confirmed on values."""
    if not parts:
        return np.empty(0, dtype="uint64")
    ordered = np.sort(np.concatenate(parts))
    return np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def key_hashes(frame: pd.DataFrame, key: list[str]) -> np.ndarray:
    """Row hashes of the key columns' text (CSV keys are read as text; Parquet keys as stored)."""
    keys = frame[key].astype("string")
    hashes: np.ndarray = pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype="uint64")
    return hashes


def report_id(batch: BatchInput) -> str:
    """The folder name of a day's validation report, beside the training data versions' reports."""
    return f"batch_{batch.day}_{batch.data_version}"


def validate_input(config: PipelineConfig, batch: BatchInput) -> ValidationOutcome:
    """Run the scoring suite on every chunk and check the key is unique across the whole day.

    On failure every file of the day goes to quarantine with its report and DataValidationError
    names the file, column and rule.
    """
    spec = batch_spec(config)
    runner = SuiteRunner(config, suite=build_scoring_suite(config, spec.key))
    hashes: list[np.ndarray] = []  # 8 bytes a row: the whole day's keys fit where rows would not
    reports: list[BatchReport] = []
    for name in batch.files:
        path = Path(name)
        report = BatchReport(path.name, True, 0)
        try:
            for number, chunk in enumerate(iter_chunks(path, spec.chunk_rows, spec.key), start=1):
                chunk_report = runner.validate(chunk, path.name)
                report.rows += chunk_report.rows
                report.expectations_run = chunk_report.expectations_run
                _merge(report, chunk_report.failures, number)
                if all(column in chunk.columns for column in spec.key):
                    hashes.append(key_hashes(chunk, spec.key))
                log.info(
                    "%s chunk %d: %d rows, %d rules broken",
                    path.name,
                    number,
                    len(chunk),
                    len(report.failures),
                )
        except UnreadableBatchError as exc:
            report.failures.append(RuleFailure("(file)", exc.rule, str(exc)))
        report.success = not report.failures
        reports.append(report)

    duplicated = repeated_hashes(hashes)
    if duplicated.size:
        _report_repeated_keys(config, batch, reports, duplicated)

    report_dir = pipeline_paths(config).reports / report_id(batch)
    outcome = ValidationOutcome(
        batch.data_version,
        all(report.success for report in reports),
        str(report_dir / "report.html"),
        reports,
    )
    if not outcome.success:
        for name, report in zip(batch.files, reports, strict=True):
            quarantine_batch(config, report, Path(name))
            outcome.quarantined.append(report.file)
    write_report(config, outcome, report_dir)
    if not outcome.success:
        raise DataValidationError(failure_message(outcome))
    log.info(
        "%s %s: %d rows in %d files passed the schema",
        config.name,
        batch.day,
        sum(r.rows for r in reports),
        len(reports),
    )
    return outcome


def _merge(report: BatchReport, failures: list[RuleFailure], chunk: int) -> None:
    """Keep the first description of each broken (column, rule), saying which chunk showed it."""
    seen = {(failure.column, failure.rule) for failure in report.failures}
    for failure in failures:
        if (failure.column, failure.rule) not in seen:
            detail = failure.detail if chunk == 1 else f"{failure.detail} (first seen in chunk {chunk})"
            report.failures.append(RuleFailure(failure.column, failure.rule, detail))
            seen.add((failure.column, failure.rule))


def _report_repeated_keys(
    config: PipelineConfig,
    batch: BatchInput,
    reports: list[BatchReport],
    duplicated: np.ndarray,
) -> None:
    """Confirm the repeated hashes on the key values themselves and report them per file."""
    key = batch_spec(config).key
    seen: dict[tuple[str, ...], str] = {}
    repeats: dict[int, list[str]] = {}
    for index, name in enumerate(batch.files):
        if any(failure.column == "(file)" for failure in reports[index].failures):
            continue  # unreadable: already reported, and nothing to compare
        for chunk in iter_chunks(Path(name), batch_spec(config).chunk_rows, key):
            rows = chunk.loc[np.isin(key_hashes(chunk, key), duplicated), key].astype("string")
            for values in rows.itertuples(index=False, name=None):
                value = tuple(str(v) for v in values)
                if value in seen:
                    repeats.setdefault(index, []).append(f"{'/'.join(value)} (also in {seen[value]})")
                else:
                    seen[value] = Path(name).name
    for index, examples in repeats.items():
        report = reports[index]
        report.failures.append(
            RuleFailure(
                ", ".join(key),
                UNIQUE_KEY_RULE,
                f"{len(examples)} rows repeat a key, e.g. {examples[:EXAMPLES]}",
            )
        )
        report.success = False
