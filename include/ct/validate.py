"""Validate: a Great Expectations 1.x suite built from the pipeline config, run on every batch.

Schema skew (missing or unexpected columns, wrong types, values outside the schema) stops the run:
the offending batch goes to quarantine with a human-readable report and nothing is trained on it.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from include.ct.config import FeatureSpec, PipelineConfig
from include.ct.extract import Snapshot
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
GX_DATA_SOURCE = "landing"  # the in-memory data source each batch is validated through
GX_DATA_SOURCE_TYPE = "ct_column_scoped_pandas"  # its GX type (``column_scoped_data_source``)
SCOPED_COLUMN = "ct_scoped_column"  # compute-domain key naming the column a column rule reads
FINGERPRINT_ATTR = "ct_fingerprint"  # frame attr that carries a batch's known fingerprint to GX
DATA_DOCS_STATIC_DIR = ".data_docs_static"  # under the reports: the one copy every site links to


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
    """A fresh in-memory GX context without analytics, progress bars or YAML round trips.

    An ephemeral context keeps its project config in memory, and GX also writes a YAML copy of
    it to an in-memory store on every data source or Data Docs site change: a copy nothing reads
    back, ~4 ms each and five per validated batch. This context skips writing that copy.
    """
    import great_expectations as gx

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.variables.save = lambda: None  # the config itself stays in context.variables.config
    return context


def build_expectation_suite(config: PipelineConfig) -> gx.ExpectationSuite:
    """The GX suite that encodes the config's schema: columns, types, nulls, values, ranges, rows."""
    import great_expectations as gx
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
    return gx.ExpectationSuite(name=f"{config.name}_schema", expectations=unique)


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


def _configuration_memo() -> ContextVar[dict[int, tuple[Any, Any]] | None]:
    """Install, once per process, GX expectations' configuration built once per validation.

    GX rebuilds an expectation's configuration from its pydantic fields on every read, and reads
    it ~80 times per expectation while it validates a batch (per key of its domain, success and
    runtime kwargs): ~0.03 s a batch for the churn suite's 19 rules. Inside
    ``_configurations_built_once`` each expectation object's configuration is built on its first
    read and reused; elsewhere GX's property runs unchanged. GX creates these objects from the
    suite's configurations as it validates and copies a configuration before changing it.
    """
    from great_expectations.expectations.expectation import Expectation

    installed = Expectation.__dict__["configuration"]
    memo: ContextVar[dict[int, tuple[Any, Any]] | None] | None = getattr(installed.fget, "ct_memo", None)
    if memo is not None:  # already installed (this module was imported afresh in a preloaded fork)
        return memo
    memo = ContextVar("ct_expectation_configurations", default=None)
    build = installed.fget

    def configuration(self: Any) -> Any:
        built = memo.get()
        if built is None:
            return build(self)
        entry = built.get(id(self))
        if entry is None or entry[0] is not self:  # kept alive with its entry: ids are not reused
            entry = built[id(self)] = (self, build(self))
        return entry[1]

    configuration.ct_memo = memo  # type: ignore[attr-defined]
    configuration.__doc__ = build.__doc__
    Expectation.configuration = property(configuration)  # type: ignore[method-assign,assignment]
    return memo


@contextmanager
def _configurations_built_once() -> Iterator[None]:
    """Within this block, each GX expectation object builds its configuration once (see above)."""
    memo = _configuration_memo()
    token = memo.set({})
    try:
        yield
    finally:
        memo.reset(token)


def _gx_view(config: PipelineConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The batch as GX hashes it: text category columns dictionary-encoded, values unchanged.

    Without a known fingerprint GX hashes the whole batch, and on Arrow text columns that hash
    was most of its per-row cost (1M churn rows: 0.31 s with the encoding, its own cost
    included, against 0.44-0.54 s without). With a fingerprint the encoding costs more than it
    saves (0.184 s against 0.163 s). Only category features without a range are encoded (their
    only rules are value set and nulls, which hold the same); other columns reach GX as they came.
    """
    import pyarrow as pa

    if not frame.columns.is_unique:
        return frame
    encoded = {
        name: pa.array(frame[name]).dictionary_encode().to_pandas().set_axis(frame.index)
        for name, spec in config.features.items()
        if spec.type == "category"
        and spec.min is None
        and spec.max is None
        and name in frame.columns
        and isinstance(frame[name].dtype, pd.StringDtype)
    }
    return frame.assign(**encoded) if encoded else frame


@functools.cache
def column_scoped_data_source() -> type:
    """A GX pandas data source whose engine gives each column rule its own column, not the batch.

    GX's pandas engine hands a column rule the whole batch, and each range or value-set rule on a
    column with nulls filters all of it through that column's non-null mask: two copies of every
    column per such rule, so the cost grows with width times nullable columns (the scale bench's
    24 features, six nullable: 1M rows in 1.06-1.20 s instead of 1.32-1.58 s). Scoped to the
    rule's column, the copy is that column alone. The results are the same: no rule of the
    suite, at its BASIC result format, reads another column.
    """
    from great_expectations.core.batch import BatchMarkers
    from great_expectations.core.batch_spec import RuntimeDataBatchSpec
    from great_expectations.datasource.fluent import PandasDatasource
    from great_expectations.datasource.fluent.sources import DataSourceManager
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.execution_engine.pandas_batch_data import PandasBatchData

    if GX_DATA_SOURCE_TYPE in DataSourceManager.type_lookup:
        # Registered once per process: this module was imported afresh (edited in a preloaded fork).
        registered: type = DataSourceManager.type_lookup[GX_DATA_SOURCE_TYPE]
        return registered

    class ColumnScopedPandasEngine(PandasExecutionEngine):  # type: ignore[misc]
        def get_domain_records(self, domain_kwargs: dict[str, Any]) -> pd.DataFrame:
            records = super().get_domain_records(domain_kwargs)
            column = domain_kwargs.get("column", domain_kwargs.get(SCOPED_COLUMN))
            if column is None or not records.columns.is_unique or column not in records.columns:
                return records
            return records[column].to_frame()

        def get_compute_domain(
            self, domain_kwargs: dict[str, Any], domain_type: Any, accessor_keys: Any = None
        ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
            # GX moves a column rule's column from the compute domain to the accessor, and the
            # rule's unexpected-values metric reads the compute domain again: the whole batch,
            # filtered through the column's non-null mask. Marked there, that read is scoped too
            # (under a key of its own: GX merges the compute and accessor kwargs elsewhere).
            records, compute, accessor = super().get_compute_domain(domain_kwargs, domain_type, accessor_keys)
            if "column" in domain_kwargs and "column" in accessor:
                compute = {**compute, SCOPED_COLUMN: accessor["column"]}
            return records, compute, accessor

        def get_batch_data_and_markers(self, batch_spec: Any) -> tuple[Any, Any]:
            # GX fingerprints a frame by hashing every row of it. A landed batch has a fingerprint
            # already, its file's SHA-256, which SuiteRunner.validate hands over on the frame.
            # GX loads a batch twice (once for the Batch, again for its validator), so the attr
            # stays on the given frame and the engine works on a shallow copy without it.
            frame = batch_spec.batch_data if isinstance(batch_spec, RuntimeDataBatchSpec) else None
            if not isinstance(frame, pd.DataFrame) or FINGERPRINT_ATTR not in frame.attrs:
                return super().get_batch_data_and_markers(batch_spec)  # type: ignore[no-any-return]
            markers = BatchMarkers(
                {
                    "ge_load_time": datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
                    "pandas_data_fingerprint": frame.attrs[FINGERPRINT_ATTR],
                }
            )
            frame = frame.copy(deep=False)
            del frame.attrs[FINGERPRINT_ATTR]
            batch_spec.batch_data = "PandasDataFrame"
            frame = self._apply_partitioning_and_sampling_methods(batch_spec, frame)
            return PandasBatchData(execution_engine=self, dataframe=frame), markers

    class ColumnScopedPandasDatasource(PandasDatasource):  # type: ignore[misc]
        type: Literal["ct_column_scoped_pandas"] = "ct_column_scoped_pandas"
        execution_engine_override = ColumnScopedPandasEngine

    return ColumnScopedPandasDatasource


class SuiteRunner:
    """Runs the config's GX suite on batch after batch through one GX context.

    The context, suite and Data Docs site are set up once for all the batches of a snapshot, and
    the site is built once, after the last batch, with a page per batch: a site built per batch
    kept only the last batch's page (GX drops pages whose results its context does not hold).
    Batches are validated with ``Batch.validate``: a Checkpoint (with its validation definition)
    adds nothing to an in-memory run but ~0.03 s a batch of checks that its stored copies are
    current.
    """

    def __init__(
        self, config: PipelineConfig, docs_dir: Path | None = None, shared_static_dir: Path | None = None
    ) -> None:
        self.config = config
        self.context = ephemeral_context()
        self.docs_dir = docs_dir
        if docs_dir is not None:
            from include.ct import data_docs

            data_docs.add_site(self.context, docs_dir, shared_static_dir)
        column_scoped_data_source()  # registers its add method on GX's data source manager
        self.suite = self.context.suites.add(build_expectation_suite(config))
        self.results: list[Any] = []  # kept for Data Docs: rule outcomes and examples, no rows

    def validate(self, frame: pd.DataFrame, file: str, *, fingerprint: str | None = None) -> BatchReport:
        """Run the suite on one batch and describe every failure.

        ``fingerprint`` (the batch file's SHA-256) becomes the result's batch fingerprint;
        without it GX hashes the frame. The batch's Data Docs page is named after ``file``.
        """
        data_source = getattr(self.context.data_sources, f"add_{GX_DATA_SOURCE_TYPE}")(GX_DATA_SOURCE)
        batch_definition = data_source.add_dataframe_asset(file).add_batch_definition_whole_dataframe(file)
        if fingerprint is None:
            view = _gx_view(self.config, frame)
        else:
            view = frame.copy(deep=False)  # the attr is for GX's engine, not set on the caller's frame
            view.attrs[FINGERPRINT_ATTR] = fingerprint
        try:
            batch = batch_definition.get_batch(batch_parameters={"dataframe": view})
            with _configurations_built_once():
                result = batch.validate(self.suite, result_format=RESULT_FORMAT)
            del batch, view
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
            from include.ct import data_docs

            data_docs.render(self.context, self.results)


def validate_frame(
    config: PipelineConfig,
    frame: pd.DataFrame,
    file: str,
    docs_dir: Path | None = None,
    *,
    fingerprint: str | None = None,
    shared_static_dir: Path | None = None,
) -> BatchReport:
    """Run the config's GX suite on one batch and describe every failure.

    With ``docs_dir`` the result is also rendered as GX Data Docs there, its static assets linked
    from ``shared_static_dir`` when given (``data_docs.add_site``). ``fingerprint`` as in
    ``SuiteRunner.validate``.
    """
    runner = SuiteRunner(config, docs_dir, shared_static_dir)
    report = runner.validate(frame, file, fingerprint=fingerprint)
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

    runner = SuiteRunner(config, report_dir / "data_docs", paths.reports / DATA_DOCS_STATIC_DIR)
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
            report = runner.validate(frame, batch.file, fingerprint=batch.sha256)
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
    write_json_atomic(quarantine / f"{name}.report.json", asdict(report))
    (quarantine / f"{name}.report.html").write_text(
        _render_html(config, [report], f"Quarantined batch {report.file}"), encoding="utf-8"
    )
    log.error("Quarantined %s -> %s", source, target)
    return target


def write_report(config: PipelineConfig, outcome: ValidationOutcome, report_dir: Path) -> None:
    """Write the snapshot's validation report as JSON and HTML."""
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(report_dir / "report.json", outcome.to_dict())
    title = f"Validation of {config.name} data version {outcome.data_version}"
    (report_dir / "report.html").write_text(_render_html(config, outcome.batches, title), encoding="utf-8")


def _render_html(config: PipelineConfig, reports: list[BatchReport], title: str) -> str:
    rows = []
    for report in reports:
        status = "passed" if report.success else "FAILED"
        rows.append(
            f"<tr><td>{html.escape(report.file)}</td><td>{report.rows}</td>"
            f"<td class='{status.lower()}'>{status}</td><td></td><td></td></tr>"
        )
        rows.extend(
            f"<tr><td></td><td></td><td></td><td>{html.escape(f.column)}</td>"
            f"<td><code>{html.escape(f.rule)}</code>: {html.escape(f.detail)}</td></tr>"
            for f in report.failures
        )
    schema = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(spec.model_dump_json(exclude_none=True))}</li>"
        for name, spec in config.features.items()
    )
    return (
        "<!doctype html><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        ".failed{color:#b00;font-weight:bold}.passed{color:#070}</style>"
        f"<h1>{html.escape(title)}</h1><p>Generated {datetime.now(UTC).isoformat()} by the "
        "Great Expectations suite built from the pipeline config.</p>"
        "<table><tr><th>file</th><th>rows</th><th>status</th><th>column</th><th>rule</th></tr>"
        f"{''.join(rows)}</table><p><a href='data_docs/index.html'>Great Expectations Data Docs</a>"
        f" (every expectation with observed values)</p><h2>Schema</h2><ul>{schema}</ul>"
    )
