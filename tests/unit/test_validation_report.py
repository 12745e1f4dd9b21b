"""The validation report page: verdict and failures first, the schema as a table, Data Docs linked."""

from __future__ import annotations

from html.parser import HTMLParser

from include.ct.config import PipelineConfig
from include.ct.data.validate import BatchReport, RuleFailure
from include.ct.data.validation_report import render, schema_rows


class _Tables(HTMLParser):
    """Headings and table cells in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, str]] = []
        self.links: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        if tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")

    def handle_data(self, data: str) -> None:
        if self._tag in ("h1", "h2", "td", "b", "code", "p") and data.strip():
            self.items.append((self._tag, data.strip()))


def parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def test_failures_come_first_and_name_file_column_and_rule(churn: PipelineConfig) -> None:
    good = BatchReport("a_good.csv", True, 1200, [], expectations_run=40)
    bad = BatchReport(
        "b_bad.csv",
        False,
        300,
        [RuleFailure("tenure_months", "expect_column_values_to_be_between", "3 of 300 values above 72")],
        expectations_run=40,
    )
    page = render(churn, [good, bad], "Validation of churn v1", data_docs_href="data_docs/index.html")
    tables = parse(page)
    headings = [text for tag, text in tables.items if tag == "h2"]
    assert headings == ["Failures", "Batches", "Schema"]
    assert "FAILED: 1 rule(s) broken in 1 of 2 batch(es)" in page
    cells = [text for _, text in tables.items]
    failure = cells.index("b_bad.csv")
    assert cells[failure : failure + 4] == [
        "b_bad.csv",
        "tenure_months",
        "expect_column_values_to_be_between",
        "3 of 300 values above 72",
    ]
    batches = cells.index("Batches")
    assert cells.index("b_bad.csv", batches) < cells.index("a_good.csv", batches)  # failed batches first
    assert tables.links == ["data_docs/index.html"]


def test_schema_is_a_table_of_every_column(churn: PipelineConfig) -> None:
    page = render(churn, [BatchReport("x.csv", True, 10, [])], "ok")
    assert "{" not in page.split("<h2>Schema</h2>")[1]  # no raw JSON
    rows = {row.column: row for row in schema_rows(churn)}
    assert set(churn.features) | {churn.target} <= set(rows)
    tenure = churn.features["tenure_months"]
    assert rows["tenure_months"].allowed == f"{tenure.min:g} to {tenure.max:g}"
    category = next(name for name, spec in churn.features.items() if spec.type == "category")
    assert rows[category].allowed == ", ".join(str(v) for v in churn.features[category].values or [])
    assert rows[churn.target].role == "target"
    assert "passed: 1 batch(es) met every rule" in page
    assert "Data Docs" not in page  # a quarantine report has no Data Docs beside it


def test_values_from_the_data_are_escaped(churn: PipelineConfig) -> None:
    failure = RuleFailure("plan", "in_set", "<img src=x onerror=alert(1)>")
    bad = BatchReport("<script>.csv", False, 1, [failure])
    page = render(churn, [bad], "t")
    assert "<script>" not in page and "<img" not in page
