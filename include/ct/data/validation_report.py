"""The validation report a person reads: what failed first, then every batch, then the schema.

The page is self-contained HTML (no scripts, no external assets) so it renders the same from the
Airflow report viewer, a quarantine folder or a copied file.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from include.ct.config import FeatureSpec, PipelineConfig

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "th{background:#f4f4f4}.failed{color:#b00;font-weight:bold}.passed{color:#070;font-weight:bold}"
    ".summary{font-size:1.1em;padding:.6em 1em;border-radius:4px}"
    ".summary.failed{background:#fde8e8}.summary.passed{background:#e6f4e6}code{font-size:.95em}"
)


class Failure(Protocol):
    """One failed rule: its column, the rule's name and the detail in words."""

    column: str
    rule: str
    detail: str


class Batch(Protocol):
    """One validated batch file and its failures."""

    file: str
    success: bool
    rows: int
    expectations_run: int

    @property
    def failures(self) -> Sequence[Failure]: ...


@dataclass(frozen=True)
class SchemaRow:
    """One column of the pipeline's schema as the report's table shows it."""

    column: str
    role: str
    type: str
    nullable: str
    allowed: str
    description: str


def schema_rows(config: PipelineConfig) -> list[SchemaRow]:
    """The features and the target, in config order, with their allowed values in words."""
    rows = [
        SchemaRow(
            name,
            "feature",
            spec.type,
            "yes" if spec.nullable else "no",
            allowed(spec),
            spec.description or "",
        )
        for name, spec in config.features.items()
    ]
    target_values = ", ".join(str(v) for v in config.target_values) if config.target_values else "any"
    target_type = "label" if config.task == "classification" else "numeric"
    rows.append(
        SchemaRow(config.target, "target", target_type, "no", target_values, "what the model predicts")
    )
    if config.id_column:
        rows.append(SchemaRow(config.id_column, "row id", "any", "no", "unique within a batch", ""))
    if config.timestamp:
        rows.append(
            SchemaRow(
                config.timestamp, "timestamp", "datetime", "no", "any non-null value", "when the row happened"
            )
        )
    return rows


def allowed(spec: FeatureSpec) -> str:
    """The values a column accepts: a range, a value set or anything of its type."""
    if spec.values is not None:
        return ", ".join(str(v) for v in spec.values)
    if spec.min is not None and spec.max is not None:
        return f"{spec.min:g} to {spec.max:g}"
    if spec.min is not None:
        return f">= {spec.min:g}"
    if spec.max is not None:
        return f"<= {spec.max:g}"
    return "any finite value" if spec.is_numeric else "any"


def render(
    config: PipelineConfig, batches: Sequence[Batch], title: str, *, data_docs_href: str | None = None
) -> str:
    """The report page: a verdict, failures first (file, column, rule, detail), batches, schema."""
    failed = [batch for batch in batches if not batch.success]
    if failed:
        count = sum(len(batch.failures) for batch in failed)
        verdict = (
            f"<p class='summary failed'>FAILED: {count} rule(s) broken in {len(failed)} of "
            f"{len(batches)} batch(es). The failed batches are quarantined; nothing was trained on them.</p>"
        )
    else:
        verdict = f"<p class='summary passed'>passed: {len(batches)} batch(es) met every rule.</p>"
    failure_rows = "".join(
        f"<tr><td>{_e(batch.file)}</td><td><b>{_e(f.column)}</b></td><td><code>{_e(f.rule)}</code></td>"
        f"<td>{_e(f.detail)}</td></tr>"
        for batch in failed
        for f in batch.failures
    )
    failures = (
        "<h2>Failures</h2><table><tr><th>file</th><th>column</th><th>rule</th><th>detail</th></tr>"
        f"{failure_rows}</table>"
        if failed
        else ""
    )
    ordered = sorted(batches, key=lambda batch: (batch.success, batch.file))
    batch_rows = "".join(
        f"<tr><td>{_e(batch.file)}</td><td>{batch.rows:,}</td><td>{batch.expectations_run}</td>"
        f"{_status(batch.success)}</tr>"
        for batch in ordered
    )
    docs = (
        f"<p><a href='{_e(data_docs_href)}'>Great Expectations Data Docs</a>: every expectation of "
        "the suite with its observed values.</p>"
        if data_docs_href
        else ""
    )
    schema = "".join(
        f"<tr><td><b>{_e(row.column)}</b></td><td>{row.role}</td><td>{_e(row.type)}</td>"
        f"<td>{row.nullable}</td><td>{_e(row.allowed)}</td><td>{_e(row.description)}</td></tr>"
        for row in schema_rows(config)
    )
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style>"
        f"<h1>{_e(title)}</h1>{verdict}{failures}"
        "<h2>Batches</h2><table><tr><th>file</th><th>rows</th><th>rules checked</th><th>status</th></tr>"
        f"{batch_rows}</table>{docs}"
        f"<h2>Schema</h2><p>The rules come from the pipeline config <code>{_e(config.name)}</code>; "
        "unexpected columns fail the batch.</p>"
        "<table><tr><th>column</th><th>role</th><th>type</th><th>nullable</th><th>allowed</th>"
        f"<th>description</th></tr>{schema}</table>"
        f"<p><small>Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC by the Great Expectations "
        "suite built from the pipeline config.</small></p></html>"
    )


def _status(success: bool) -> str:
    return "<td class='passed'>passed</td>" if success else "<td class='failed'>FAILED</td>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
