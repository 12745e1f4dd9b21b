"""Validation throughput: the pipeline's GX suite against the same checks in plain pandas.

The pandas floor is derived from the GX suite itself (``build_expectation_suite``), so both
check exactly the same rules. Writes ``bench/results/validation.json``.

    python -m bench.validation --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.measure import summarize, write_result
from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.validate import FINITE_RULE, build_expectation_suite, validate_frame

PIPELINE = "churn"


def churn_frame(config: PipelineConfig, rows: int, *, day: int = 1) -> pd.DataFrame:
    """A clean batch with exactly the columns the pipeline lands (as ``datagen.write_batch``)."""
    from tools import datagen

    frame = datagen.churn_batch(rows, day=day)
    columns = [*config.features, config.target, *([config.timestamp] if config.timestamp else [])]
    return frame[columns]


def _unexpected(rule: str, kwargs: dict[str, Any], frame: pd.DataFrame) -> int:
    """How many values of one column break one rule, computed with plain pandas."""
    column = frame[kwargs["column"]]
    if rule == "expect_column_values_to_not_be_null":
        return int(column.isna().sum())
    if rule == "expect_column_values_to_be_unique":
        present = column.dropna()
        return int(present.duplicated(keep=False).sum())
    present = column.dropna()
    if rule == "expect_column_values_to_be_in_set":
        return int((~present.isin(kwargs["value_set"])).sum())
    if rule == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        inside = np.ones(len(present), dtype=bool)
        if low is not None:
            inside &= (present >= low).to_numpy()
        if high is not None:
            inside &= (present <= high).to_numpy()
        return int((~inside).sum())
    raise ValueError(f"no pandas floor for rule {rule}")


def pandas_failures(config: PipelineConfig, frame: pd.DataFrame) -> set[tuple[str, str]]:
    """(column, rule) of every rule of the config's GX suite that ``frame`` breaks, in plain pandas."""
    failures: set[tuple[str, str]] = set()
    for expectation in build_expectation_suite(config).expectations:
        rule = expectation.expectation_type
        kwargs = expectation.configuration.kwargs
        column = str(kwargs.get("column", "(table)"))
        if (expectation.meta or {}).get(FINITE_RULE):
            rule = "finite values"
        if rule == "expect_table_columns_to_match_set":
            if set(frame.columns) != set(kwargs["column_set"]):
                failures.add(("(table)", rule))
            continue
        if rule == "expect_table_row_count_to_be_between":
            if len(frame) < kwargs["min_value"]:
                failures.add((column, rule))
            continue
        if column not in frame.columns:
            failures.add((column, rule))
            continue
        if rule == "expect_column_values_to_be_in_type_list":
            if frame[column].dtype.name not in kwargs["type_list"]:
                failures.add((column, rule))
            continue
        check = "expect_column_values_to_be_between" if rule == "finite values" else rule
        try:
            broken = _unexpected(check, kwargs, frame)
        except TypeError:  # values that cannot be compared, as GX reports them
            broken = 1
        if broken:
            failures.add((column, rule))
    return failures


def gx_failures(
    config: PipelineConfig, frame: pd.DataFrame, docs_dir: Path | None = None
) -> set[tuple[str, str]]:
    """(column, rule) of every failure the pipeline's GX validation reports on ``frame``."""
    report = validate_frame(config, frame, "bench.parquet", docs_dir)
    return {
        ("(table)" if f.rule == "expect_table_columns_to_match_set" else f.column, f.rule)
        for f in report.failures
    }


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` times, the runs taking turns.

    The host's speed drifts by more than the gap being judged; taking turns, a drift slows every
    run alike instead of whichever ran during it.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def measure(rows: int, repeats: int) -> dict[str, Any]:
    """Time GX (as the pipeline runs it, with Data Docs) and the pandas floor on ``rows`` clean rows."""
    config = find_pipeline_config(PIPELINE)
    frame = churn_frame(config, rows)
    small = frame.head(FIXED_ROWS).copy()
    with tempfile.TemporaryDirectory(prefix="ct-bench-docs-") as parent:

        def docs() -> Path:  # a fresh site per run, as each data version gets in the pipeline
            return Path(tempfile.mkdtemp(dir=parent))

        def run(batch: pd.DataFrame, docs_dir: Path | None) -> None:
            validate_frame(config, batch, "bench.parquet", docs_dir)

        gx_failures(config, small, docs())  # imports and first-use costs are not throughput
        if pandas_failures(config, frame) or gx_failures(config, small):
            raise RuntimeError("the benchmark batch should be clean")
        seconds = _interleaved(
            {
                "gx": lambda: run(frame, docs()),
                "floor": lambda: pandas_failures(config, frame),
                "fixed": lambda: run(small, docs()),
                "floor_fixed": lambda: pandas_failures(config, small),
                "checks": lambda: run(frame, None),
                "fixed_checks": lambda: run(small, None),
            },
            repeats,
        )
    summary = {name: summarize(runs) for name, runs in seconds.items()}
    gx, floor, fixed, floor_fixed = summary["gx"], summary["floor"], summary["fixed"], summary["floor_fixed"]
    checks, fixed_checks = summary["checks"], summary["fixed_checks"]
    per_row_gx = max(gx["median"] - fixed["median"], 0.0)
    per_row_floor = max(floor["median"] - floor_fixed["median"], 1e-9)
    note = (
        f"GX costs {fixed['median']:.2f} s per batch whatever its size ({FIXED_ROWS:,} rows; "
        f"{fixed['median'] - fixed_checks['median']:.2f} s of it Data Docs), while the pandas floor of all "
        f"{rows:,} rows takes {floor['median']:.2f} s: that fixed cost alone is "
        f"{fixed['median'] / floor['median']:.1f}x the floor. Beyond it GX spends {per_row_gx:.2f} s on the "
        f"rows against pandas' {per_row_floor:.2f} s ({per_row_gx / per_row_floor:.1f}x). " + PROFILE_NOTE
    )
    return {
        "rows": rows,
        "gx_s": gx,
        "gx_without_docs_s": checks,
        "pandas_s": floor,
        "gx_rows_per_s": rows / gx["median"],
        "pandas_rows_per_s": rows / floor["median"],
        "ratio": gx["median"] / floor["median"],
        "fixed_rows": FIXED_ROWS,
        "fixed_s": fixed,
        "fixed_without_docs_s": fixed_checks,
        "per_row_ratio": per_row_gx / per_row_floor,
        "profile_note": note,
    }


FIXED_ROWS = 1000
PROFILE_NOTE = (
    "GX runs through its public API only (an ephemeral context, a pandas data source, "
    "Batch.validate, a SiteBuilder on a file store), as GX ships it. Its fixed part per batch is "
    "setting up the context, suite and Data Docs site; building the metric graph of the suite "
    "(a metric configuration per rule and domain, each with an id derived from its kwargs); "
    "storing the result; and rendering the site (result, suite and index pages, its static "
    "assets copied into every site). Its per-row part is its map rules: each computes its mask, "
    "counts it and collects its unexpected examples, where the floor only counts; GX also hashes "
    "every row for the batch fingerprint, and filters a nullable column's rule domain through "
    "its non-null mask."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    result = measure(args.rows, args.repeats)
    path = write_result("validation", result)
    gx, floor = result["gx_s"]["median"], result["pandas_s"]["median"]
    print(f"{args.rows} rows: GX {gx:.3f} s, pandas {floor:.3f} s, ratio {result['ratio']:.1f}x -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
