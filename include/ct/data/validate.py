"""Validate: a Great Expectations 1.x suite built from the pipeline config, run on every batch.

Schema skew (missing or unexpected columns, wrong types, values outside the schema) stops the run:
the offending batch goes to quarantine with a human-readable report and nothing is trained on it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from include.ct.config import FeatureSpec, PipelineConfig
from include.ct.data import validation_report
from include.ct.data.extract import Snapshot
from include.ct.storage import file_sha256, move_file, pipeline_paths, write_json_atomic

if TYPE_CHECKING:
    import great_expectations as gx

log = logging.getLogger(__name__)

INTEGER_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
NULLABLE_INTEGER_TYPES = ["Int8", "Int16", "Int32", "Int64"]
FLOAT_TYPES = ["float16", "float32", "float64", "Float32", "Float64"]
BOOLEAN_TYPES = ["bool", "boolean"]
# Category columns are checked by their value set, which holds for pandas 2 ``object`` and
# pandas 3 ``str`` columns alike (GX type names match neither reliably).
RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 5}
FINITE_RULE = "ct_finite"  # meta flag of the expectation that rejects +-inf
GX_DATA_SOURCE = "landing"  # the in-memory pandas data source each batch is validated through


class DataValidationError(Exception):
    """At least one batch broke the schema; the message names file, column and rule."""


@dataclass
class RuleFailure:
    """One failed expectation, said in words a data engineer can act on."""

    column: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"column '{self.column}' rule {self.rule}: {self.detail}"


@dataclass
class BatchReport:
    """The validation outcome of one batch file."""

    file: str
    success: bool
    rows: int
    failures: list[RuleFailure] = field(default_factory=list)
    expectations_run: int = 0


@dataclass
class ValidationOutcome:
    """What validating a snapshot decided, small enough for XCom."""

    data_version: str
    success: bool
    report_path: str
    batches: list[BatchReport]
    quarantined: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_list(spec: FeatureSpec) -> list[str] | None:
    if spec.type == "integer":
        return INTEGER_TYPES + NULLABLE_INTEGER_TYPES + (FLOAT_TYPES if spec.nullable else [])
    if spec.type == "float":
        return FLOAT_TYPES + INTEGER_TYPES + NULLABLE_INTEGER_TYPES
    if spec.type == "boolean":
        return BOOLEAN_TYPES
    return None


def ephemeral_context() -> Any:
    """A fresh in-memory GX context without analytics or progress bars (task logs stay readable)."""
    import great_expectations as gx

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return context


def build_expectation_suite(config: PipelineConfig) -> gx.ExpectationSuite:
    """The GX suite that encodes the config's schema: columns, types, nulls, values, ranges, rows."""
    import great_expectations.expectations as gxe

    expectations: list[gxe.Expectation] = []
    columns = [*config.features, config.target]
    if config.timestamp:
        columns.append(config.timestamp)
    if config.id_column:
        columns.append(config.id_column)
    expectations.append(gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True))
    expectations.append(
        gxe.ExpectTableRowCountToBeBetween(min_value=config.validation.min_rows, max_value=None)
    )
    expectations.extend(feature_expectations(config))
    expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=config.target))
    if config.target_values is not None:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column=config.target, value_set=config.target_values)
        )
    if config.task == "regression":
        expectations.append(
            gxe.ExpectColumnValuesToBeInTypeList(
                column=config.target, type_list=FLOAT_TYPES + INTEGER_TYPES + NULLABLE_INTEGER_TYPES
            )
        )
    if config.timestamp:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=config.timestamp))
    if config.id_column:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=config.id_column))
        expectations.append(gxe.ExpectColumnValuesToBeUnique(column=config.id_column))
    return _suite(f"{config.name}_schema", expectations)


def build_scoring_suite(config: PipelineConfig, key: list[str]) -> gx.ExpectationSuite:
    """The schema suite for rows to be scored: the same feature rules, no target, non-null keys.

    Columns beyond the features and keys (a label, a timestamp) are allowed and not scored.
    """
    import great_expectations.expectations as gxe

    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*config.features, *key], exact_match=False),
        *feature_expectations(config),
        *(gxe.ExpectColumnValuesToNotBeNull(column=column) for column in key),
    ]
    return _suite(f"{config.name}_scoring_schema", expectations)


def feature_expectations(config: PipelineConfig) -> list[Any]:
    """Type, null, value-set and range rules of every feature, as the schema declares them."""
    import great_expectations.expectations as gxe

    expectations: list[gxe.Expectation] = []
    for name, spec in config.features.items():
        types = _type_list(spec)
        if types:
            expectations.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=types))
        if not spec.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        if spec.values is not None:
            expectations.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=spec.values))
        if spec.min is not None or spec.max is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max)
            )
        if spec.type == "float" and (spec.min is None or spec.max is None):
            # +-inf passes type and null checks and poisons training: require finite values.
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=name,
                    min_value=-sys.float_info.max,
                    max_value=sys.float_info.max,
                    meta={FINITE_RULE: True},
                )
            )
    return expectations


def _suite(name: str, expectations: list[Any]) -> gx.ExpectationSuite:
    import great_expectations as gx

    # Built in one go (add_expectation compares each new expectation with all earlier ones), so
    # the set semantics it gave are kept here: a column that is both, say, the timestamp and a
    # required feature gets one not-null rule.
    seen: set[str] = set()
    unique = []
    for expectation in expectations:
        rule = json.dumps(
            [expectation.expectation_type, expectation.configuration.kwargs], sort_keys=True, default=str
        )
        if rule not in seen:
            seen.add(rule)
            unique.append(expectation)
    return gx.ExpectationSuite(name=name, expectations=unique)


def _first(names: list[str], limit: int = 8, *, brackets: bool = True) -> str:
    """``[a, b, c] and 40 more``: a long column list kept readable in reports and errors."""
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return f"[{shown}]" if brackets else shown


def _describe(result: Any) -> RuleFailure:
    expectation = result.expectation_config
    kwargs = dict(expectation.kwargs)
    column = str(kwargs.get("column", "(table)"))
    rule = expectation.type
    outcome = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        message = str(result.exception_info.get("exception_message", "")).splitlines()[0]
        return RuleFailure(column, rule, f"could not be checked ({message[:200]})")
    if rule == "expect_table_columns_to_match_set":
        mismatch = (outcome.get("details") or {}).get("mismatched") or {}
        parts = []
        for kind in ("missing", "unexpected"):
            names = sorted(mismatch.get(kind) or [])
            if names:
                parts.append(f"{len(names)} {kind} columns {_first(names)}")
        columns = sorted([*mismatch.get("missing", []), *mismatch.get("unexpected", [])])
        return RuleFailure(_first(columns, brackets=False) or "(table)", rule, "; ".join(parts))
    if rule == "expect_column_values_to_be_in_type_list":
        return RuleFailure(
            column,
            rule,
            f"type {outcome.get('observed_value')!r} is not one of the allowed {kwargs['type_list'][:6]}...",
        )
    if (expectation.meta or {}).get(FINITE_RULE):
        count = outcome.get("unexpected_count")
        examples = outcome.get("partial_unexpected_list") or []
        return RuleFailure(column, "finite values", f"{count} infinite values, e.g. {examples[:3]}")
    if rule == "expect_column_values_to_be_unique":
        examples = sorted({str(value) for value in outcome.get("partial_unexpected_list") or []})
        return RuleFailure(
            column, rule, f"{outcome.get('unexpected_count')} rows share an id, e.g. {examples[:5]}"
        )
    if rule == "expect_table_row_count_to_be_between":
        return RuleFailure(
            column, rule, f"{outcome.get('observed_value')} rows, at least {kwargs['min_value']} required"
        )
    limits = {k: kwargs[k] for k in ("min_value", "max_value", "value_set") if k in kwargs}
    count = outcome.get("unexpected_count")
    total = outcome.get("element_count")
    examples = outcome.get("partial_unexpected_list") or []
    return RuleFailure(column, rule, f"{count} of {total} values break it {limits}, e.g. {examples[:5]}")


class SuiteRunner:
    """Runs the config's GX suite on batch after batch through one GX context.

    The context, suite and Data Docs site are set up once for all the batches of a snapshot, and
    the site is built once, after the last batch, with a page per batch: a site built per batch
    kept only the last batch's page (GX drops pages whose results its context does not hold).
    Batches are validated with ``Batch.validate``: a Checkpoint (with its validation definition)
    would only add checks that its stored copies are current, which an in-memory run has none of.
    """

    def __init__(
        self,
        config: PipelineConfig,
        docs_dir: Path | None = None,
        suite: gx.ExpectationSuite | None = None,
    ) -> None:
        self.config = config
        self.context = ephemeral_context()
        self.docs_dir = docs_dir
        if docs_dir is not None:
            from include.ct.data import data_docs

            data_docs.add_site(self.context, docs_dir)
        self.suite = self.context.suites.add(suite or build_expectation_suite(config))
        self.results: list[Any] = []  # kept for Data Docs: rule outcomes and examples, no rows

    def validate(self, frame: pd.DataFrame, file: str) -> BatchReport:
        """Run the suite on one batch and describe every failure; its Data Docs page is ``file``."""
        data_source = self.context.data_sources.add_pandas(GX_DATA_SOURCE)
        batch_definition = data_source.add_dataframe_asset(file).add_batch_definition_whole_dataframe(file)
        try:
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(self.suite, result_format=RESULT_FORMAT)
            del batch
        finally:
            # GX keeps its last context for the process, and through the data source's execution
            # engine the whole batch: without this a snapshot's next batch, or the value-skew read
            # after the last one, would share the task's memory with a batch already validated.
            self.context.data_sources.delete(GX_DATA_SOURCE)
        if self.docs_dir is not None:
            self.results.append(result)
        failures = [_describe(item) for item in result.results if not item.success]
        return BatchReport(
            file=file,
            success=not failures,
            rows=len(frame),
            failures=failures,
            expectations_run=len(result.results),
        )

    def build_data_docs(self) -> None:
        """Render every batch validated so far into the Data Docs site, if there is one."""
        if self.docs_dir is not None and self.results:
            from include.ct.data import data_docs

            data_docs.render(self.context, self.results)


def validate_frame(
    config: PipelineConfig, frame: pd.DataFrame, file: str, docs_dir: Path | None = None
) -> BatchReport:
    """Run the config's GX suite on one batch and describe every failure.

    With ``docs_dir`` the result is also rendered as GX Data Docs there.
    """
    runner = SuiteRunner(config, docs_dir)
    report = runner.validate(frame, file)
    runner.build_data_docs()
    return report


def validate_snapshot(config: PipelineConfig, snapshot: Snapshot) -> ValidationOutcome:
    """Validate every batch of a snapshot; accept it, or quarantine the bad batches and raise."""
    paths = pipeline_paths(config)
    report_dir = paths.reports / snapshot.data_version
    accepted_marker = paths.accepted / f"{snapshot.data_version}.json"
    if accepted_marker.exists():
        log.info("Data version %s was already accepted (retry): nothing to do", snapshot.data_version)
        return ValidationOutcome(snapshot.data_version, True, str(report_dir / "report.html"), batches=[])

    runner = SuiteRunner(config, report_dir / "data_docs")
    reports: list[BatchReport] = []
    for index, batch in enumerate(snapshot.batches, start=1):
        if batch.read_error or not batch.part:
            report = BatchReport(
                batch.file,
                False,
                0,
                [RuleFailure("(file)", batch.read_rule or "readable", batch.read_error or "no data")],
            )
        else:
            frame = pd.read_parquet(Path(snapshot.path) / batch.part)
            report = runner.validate(frame, batch.file)
            del frame  # freed before the next batch is read, not after
        reports.append(report)
        log.info(
            "Validated batch %d/%d %s: %s (%d expectations)",
            index,
            len(snapshot.batches),
            batch.file,
            "passed" if report.success else f"{len(report.failures)} failed",
            report.expectations_run,
        )
    runner.build_data_docs()

    outcome = ValidationOutcome(
        snapshot.data_version,
        all(report.success for report in reports),
        str(report_dir / "report.html"),
        reports,
    )
    for report in reports:
        if not report.success:
            quarantine_batch(config, report, paths.landing / report.file)
            outcome.quarantined.append(report.file)
    write_report(config, outcome, report_dir)
    if not outcome.success:
        raise DataValidationError(failure_message(outcome))

    for batch in snapshot.batches:
        move_file(paths.landing / batch.file, paths.archive / snapshot.data_version)
    write_json_atomic(
        accepted_marker,
        {
            "data_version": snapshot.data_version,
            "accepted_at": datetime.now(UTC).isoformat(),
            "rows": snapshot.rows,
            "batches": [batch.file for batch in snapshot.batches],
        },
    )
    return outcome


def failure_message(outcome: ValidationOutcome) -> str:
    """One line per failed rule, each naming the file, column and rule."""
    lines = [f"Data version {outcome.data_version} failed validation; quarantined {outcome.quarantined}:"]
    for report in outcome.batches:
        lines.extend(f"  file '{report.file}': {failure}" for failure in report.failures)
    lines.append(f"Report: {outcome.report_path}")
    return "\n".join(lines)


def quarantine_batch(config: PipelineConfig, report: BatchReport, source: Path) -> Path:
    """Move a bad batch out of the landing zone, with its report beside it."""
    quarantine = pipeline_paths(config).quarantine
    name = source.name
    earlier = quarantine / name
    if source.exists() and earlier.exists() and file_sha256(earlier) != file_sha256(source):
        # The same name quarantined before with other content: keep both.
        name = f"{source.stem}__{file_sha256(source)[:8]}{source.suffix}"
    quarantine.mkdir(parents=True, exist_ok=True)
    target = quarantine / name
    if source.exists():
        shutil.move(str(source), target)
        os.utime(target)  # its age in quarantine (retention.quarantine_days) starts now
    write_json_atomic(quarantine / f"{name}.report.json", asdict(report))
    (quarantine / f"{name}.report.html").write_text(
        validation_report.render(config, [report], f"Quarantined batch {report.file}"), encoding="utf-8"
    )
    log.error("Quarantined %s -> %s", source, target)
    return target


def write_report(config: PipelineConfig, outcome: ValidationOutcome, report_dir: Path) -> None:
    """Write the snapshot's validation report as JSON and HTML."""
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / "report.json", outcome.to_dict())
    title = f"Validation of {config.name} data version {outcome.data_version}"
    page = validation_report.render(config, outcome.batches, title, data_docs_href="data_docs/index.html")
    (report_dir / "report.html").write_text(page, encoding="utf-8")
