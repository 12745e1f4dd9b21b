"""Data Docs: every validated batch gets its result page, the suite's page and an index."""

from __future__ import annotations

import pathlib

import great_expectations as gx
import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.data.extract import extract
from include.ct.data.validate import DataValidationError, validate_frame, validate_snapshot
from include.ct.storage import pipeline_paths
from tools import datagen

GX_STATIC = pathlib.Path(gx.__file__).parent / "render" / "view" / "static"


def _batch(churn: PipelineConfig, rows: int = 300) -> pd.DataFrame:
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    return datagen.churn_batch(rows, day=1)[columns]


def _files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every file under ``root`` by its path relative to it."""
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _static_files(site: pathlib.Path) -> dict[str, pathlib.Path]:
    return _files(site / "static")


def test_a_batch_gets_data_docs_for_its_result_and_suite(
    churn: PipelineConfig, tmp_path: pathlib.Path
) -> None:
    frame = _batch(churn)
    frame.loc[:1, "tenure_months"] = -4  # one failed rule, shown on the result's page
    report = validate_frame(churn, frame, "day_0001.csv", tmp_path)
    assert not report.success
    [result_page] = (tmp_path / "validations").rglob("*.html")
    text = result_page.read_text()
    assert "Failed" in text and "tenure_months" in text
    assert (tmp_path / "expectations" / f"{churn.name}_schema.html").exists()
    index = (tmp_path / "index.html").read_text()
    assert result_page.relative_to(tmp_path).as_posix() in index


def test_every_site_carries_gx_static_assets_as_plain_files(churn: PipelineConfig) -> None:
    datagen.write_batch(churn, day=1, rows=300)
    version = validate_snapshot(churn, extract(churn)).data_version
    site = _static_files(pipeline_paths(churn).reports / version / "data_docs")
    assert set(site) == set(_files(GX_STATIC)) - {".DS_Store"}
    for name, path in site.items():
        assert not path.is_symlink()  # plain files: the report viewer serves only those
        assert path.read_bytes() == (GX_STATIC / name).read_bytes()


def test_a_snapshot_gets_a_page_for_every_batch(churn: PipelineConfig) -> None:
    good = datagen.write_batch(churn, day=1, rows=300)
    bad = datagen.write_batch(churn, day=2, rows=300, breakage="out_of_range")
    snapshot = extract(churn)
    with pytest.raises(DataValidationError):
        validate_snapshot(churn, snapshot)
    site = pipeline_paths(churn).reports / snapshot.data_version / "data_docs"
    pages = {p.name: p.read_text() for p in (site / "validations").rglob("*.html")}
    assert set(pages) == {f"landing-{good.name}.html", f"landing-{bad.name}.html"}
    assert "Failed" in pages[f"landing-{bad.name}.html"]
    index = (site / "index.html").read_text()
    assert all(name in index for name in pages)
