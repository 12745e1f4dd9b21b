"""Data Docs: every validated batch gets its result page, the suite's page and an index."""

from __future__ import annotations

import os
import pathlib

import great_expectations as gx
import pandas as pd
import pytest

from include.ct import data_docs, datagen
from include.ct.config import PipelineConfig
from include.ct.extract import extract
from include.ct.storage import pipeline_paths
from include.ct.validate import DATA_DOCS_STATIC_DIR, DataValidationError, validate_frame, validate_snapshot

GX_STATIC = pathlib.Path(gx.__file__).parent / "render" / "view" / "static"


def _batch(churn: PipelineConfig, rows: int = 300) -> pd.DataFrame:
    columns = [*churn.features, churn.target, *([churn.timestamp] if churn.timestamp else [])]
    return datagen.churn_batch(rows, day=1)[columns]


def _files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every file under ``root`` by its path relative to it."""
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _static_files(site: pathlib.Path) -> dict[str, pathlib.Path]:
    return _files(site / "static")


def test_data_docs_templates_are_compiled_once_for_every_process(churn: PipelineConfig) -> None:
    from great_expectations.render.view.view import DefaultJinjaPageView, DefaultJinjaView
    from jinja2 import FileSystemBytecodeCache

    datagen.write_batch(churn, day=1, rows=300)
    assert validate_snapshot(churn, extract(churn)).success
    # Views of one class share one environment, whose parsed templates stay loaded.
    page = DefaultJinjaPageView()
    assert page.env is DefaultJinjaPageView().env
    assert page.env.cache  # the first snapshot's pages loaded their templates into it
    cache = page.env.bytecode_cache
    assert isinstance(cache, FileSystemBytecodeCache)
    cache.clear()  # files left by earlier runs prove nothing
    DefaultJinjaView.ct_environments.clear()  # as a fresh task process starts: nothing loaded
    datagen.write_batch(churn, day=2, rows=300)
    assert validate_snapshot(churn, extract(churn)).success
    # A later task process (a fresh fork) loads the compiled templates instead of parsing them.
    assert list(pathlib.Path(cache.directory).glob("__jinja2_*.cache"))


def test_a_batch_gets_data_docs_for_its_result_and_suite(
    churn: PipelineConfig, tmp_path: pathlib.Path
) -> None:
    frame = _batch(churn)
    frame.loc[:1, "tenure_months"] = -4  # one failed rule, shown on the result's page
    report = validate_frame(churn, frame, "day_0001.csv", tmp_path, fingerprint="cd" * 32)
    assert not report.success
    [result_page] = (tmp_path / "validations").rglob("*.html")
    text = result_page.read_text()
    assert "cd" * 32 in text  # the landed file's hash is the batch fingerprint
    assert "Failed" in text and "tenure_months" in text
    assert (tmp_path / "expectations" / f"{churn.name}_schema.html").exists()
    index = (tmp_path / "index.html").read_text()
    assert result_page.relative_to(tmp_path).as_posix() in index


def test_sites_link_one_copy_of_the_static_assets(churn: PipelineConfig) -> None:
    datagen.write_batch(churn, day=1, rows=300)
    first = validate_snapshot(churn, extract(churn)).data_version
    datagen.write_batch(churn, day=2, rows=300)
    second = validate_snapshot(churn, extract(churn)).data_version
    reports = pipeline_paths(churn).reports
    shared = _files(reports / DATA_DOCS_STATIC_DIR / gx.__version__)
    assert set(shared) == set(_files(GX_STATIC)) - {".DS_Store"}
    for version in (first, second):
        site = _static_files(reports / version / "data_docs")
        assert set(site) == set(shared)
        for name, path in site.items():
            assert not path.is_symlink()  # plain files: the report viewer serves only those
            assert os.path.samefile(path, shared[name])
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


def test_a_rebuilt_site_keeps_its_links(churn: PipelineConfig, tmp_path: pathlib.Path) -> None:
    for file in ("day_0001.csv", "day_0002.csv"):  # a retried validation builds the site again
        validate_frame(churn, _batch(churn), file, tmp_path / "site", shared_static_dir=tmp_path / "static")
    site = _static_files(tmp_path / "site")
    assert site
    assert all(os.path.samefile(p, tmp_path / "static" / gx.__version__ / name) for name, p in site.items())


def test_assets_are_written_where_they_cannot_be_linked(
    churn: PipelineConfig, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(source: object, target: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(data_docs.os, "link", cross_device)
    validate_frame(churn, _batch(churn), "day_0001.csv", tmp_path / "site", shared_static_dir=tmp_path / "s")
    site = _static_files(tmp_path / "site")
    assert site and all(p.read_bytes() == (GX_STATIC / name).read_bytes() for name, p in site.items())
    shared = tmp_path / "s" / gx.__version__  # written before the link was tried
    assert not any(os.path.samefile(p, shared / name) for name, p in site.items())
