"""Example data: realistic daily batches for the churn pipeline, or any config's schema.

Seeded, with switches for distribution drift, label (concept) drift and a broken schema, so the
whole pipeline (validation, quarantine, gate, drift) can be exercised without real data.

    python -m tools.datagen churn              # drop the next day's batch
    python -m tools.datagen churn --drift 0.8  # covariate drift
    python -m tools.datagen churn --break wrong_type
    python -m tools.datagen churn --score-day 2026-12-06   # a table for ct_churn_batch to score
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig, find_pipeline_config
from include.ct.data.samples import EPOCH, schema_batch
from include.ct.storage import data_dir, pipeline_paths

Breakage = Literal["missing_column", "wrong_type", "out_of_range", "unexpected_column"]
BREAKAGES: tuple[str, ...] = ("missing_column", "wrong_type", "out_of_range", "unexpected_column")


def churn_batch(
    rows: int,
    *,
    day: int,
    seed: int = 0,
    drift: float = 0.0,
    label_drift: float = 0.0,
    concept_flip: float = 0.0,
) -> pd.DataFrame:
    """One day of subscription customers and whether they churned.

    ``drift`` (0..1) shifts who the customers are (shorter tenure, more support calls, more
    month-to-month contracts); ``label_drift`` (0..1) changes how churn depends on them;
    ``concept_flip`` (0..1) moves what drives churn from contract, tenure and support calls to
    region and plan (a competitor's campaign), so a model of the old concept ranks worse than chance.
    """
    rng = np.random.default_rng([seed, day])
    contract = rng.choice(
        ["month_to_month", "one_year", "two_year"],
        size=rows,
        p=_mix([0.5, 0.3, 0.2], [0.8, 0.15, 0.05], drift),
    )
    plan = rng.choice(
        ["basic", "plus", "premium"], size=rows, p=_mix([0.5, 0.35, 0.15], [0.3, 0.4, 0.3], drift)
    )
    region = rng.choice(["north", "south", "east", "west"], size=rows, p=[0.3, 0.25, 0.25, 0.2])
    tenure = np.clip(rng.gamma(2.0, 14.0 * (1 - 0.6 * drift), size=rows), 0, 240).round().astype(int)
    support_calls = rng.poisson(1.2 + 2.5 * drift, size=rows).astype(int)
    base_fee = pd.Series(plan).map({"basic": 25.0, "plus": 55.0, "premium": 95.0}).to_numpy()
    monthly_fee = np.round(base_fee + rng.normal(0, 6, size=rows), 2).clip(0)
    fee = pd.Series(monthly_fee, dtype="float64")
    fee[rng.random(rows) < 0.02] = np.nan  # billing export gaps: the schema allows nulls

    m2m = (contract == "month_to_month").astype(float)
    two_year = (contract == "two_year").astype(float)
    fee_effect = 0.015 * (np.nan_to_num(monthly_fee, nan=50.0) - 50)
    logit = -1.2 + 1.6 * m2m - 1.2 * two_year - 0.045 * tenure + 0.45 * support_calls + fee_effect
    # Concept drift: support calls stop mattering, premium customers start leaving.
    logit = logit + label_drift * (-0.45 * support_calls + 1.8 * (plan == "premium") + 0.3)
    if concept_flip:  # computed from the same draws: the customers stay, only their churn changes
        flipped = (
            -2.2
            + 2.4 * (region == "south")
            + 1.2 * (region == "west")
            + 1.4 * (plan == "basic")
            + 0.03 * tenure
        )
        logit = (1 - concept_flip) * logit + concept_flip * flipped
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    start = EPOCH + timedelta(days=day)
    seconds = np.sort(rng.integers(0, 86_400, size=rows))
    return pd.DataFrame(
        {
            "customer_id": [f"c{day:04d}-{i:05d}" for i in range(rows)],
            "event_time": [start + timedelta(seconds=int(s)) for s in seconds],
            "tenure_months": tenure,
            "plan": plan,
            "contract": contract,
            "region": region,
            "monthly_fee": fee,
            "support_calls": support_calls,
            "churned": churned,
        }
    )


def _mix(base: list[float], drifted: list[float], amount: float) -> list[float]:
    mixed = [(1 - amount) * b + amount * d for b, d in zip(base, drifted, strict=True)]
    total = sum(mixed)
    return [m / total for m in mixed]


def break_batch(frame: pd.DataFrame, config: PipelineConfig, breakage: str) -> pd.DataFrame:
    """Damage a batch the way upstream systems do, for validation and quarantine drills."""
    broken = frame.copy()
    numeric = [n for n, s in config.features.items() if s.is_numeric]
    categorical = [n for n, s in config.features.items() if s.type == "category"]
    if breakage == "missing_column":
        return broken.drop(columns=[numeric[-1] if numeric else config.feature_names[-1]])
    if breakage == "unexpected_column":
        broken["debug_flag"] = 1
        return broken
    if breakage == "wrong_type":
        column = numeric[0]
        broken[column] = broken[column].astype(str)
        broken.loc[broken.index[::7], column] = "twelve"  # not "n/a": CSV readers take that as null
        return broken
    if breakage == "out_of_range":
        low = config.features[numeric[0]].min if numeric else None
        if low is not None:
            broken.loc[broken.index[::5], numeric[0]] = low - 10
        if categorical:
            broken[categorical[0]] = broken[categorical[0]].astype(object)
            broken.loc[broken.index[::9], categorical[0]] = "unknown_value"
        return broken
    raise ValueError(f"unknown breakage '{breakage}', use one of {BREAKAGES}")


def next_day(config: PipelineConfig) -> int:
    """One past the highest ``day_NNNN`` file ever landed (landing, archive or quarantine)."""
    paths = pipeline_paths(config)
    days = [
        int(match.group(1))
        for folder in (paths.landing, paths.archive, paths.quarantine)
        if folder.exists()
        for path in folder.rglob("day_*")
        if (match := re.match(r"day_(\d+)", path.name))
    ]
    return max(days, default=0) + 1


def write_batch(
    config: PipelineConfig,
    *,
    day: int | None = None,
    rows: int = 2000,
    seed: int = 0,
    drift: float = 0.0,
    label_drift: float = 0.0,
    concept_flip: float = 0.0,
    breakage: str | None = None,
    fmt: str = "csv",
) -> Path:
    """Generate one day's batch and drop it atomically into the pipeline's landing zone."""
    day = next_day(config) if day is None else day
    if config.name == "churn":
        frame = churn_batch(
            rows, day=day, seed=seed, drift=drift, label_drift=label_drift, concept_flip=concept_flip
        )
        frame = frame[[*config.features, config.target, *([config.timestamp] if config.timestamp else [])]]
    else:
        frame = schema_batch(config, rows, day=day, seed=seed, drift=drift)
    if breakage:
        frame = break_batch(frame, config, breakage)
    landing = pipeline_paths(config).landing
    landing.mkdir(parents=True, exist_ok=True)
    return write_atomically(frame, landing / f"day_{day:04d}.{fmt}")


def write_scoring_day(
    config: PipelineConfig,
    day: date,
    *,
    rows: int = 2000,
    seed: int = 0,
    breakage: str | None = None,
    fmt: str = "parquet",
) -> Path:
    """Generate a table to score on ``day`` (keys and features, no label) into the batch source's
    date folder, written atomically."""
    from include.ct.batch.partitions import batch_spec, input_root, partition_name

    key = batch_spec(config).key
    number = (day - EPOCH.date()).days
    if config.name == "churn":
        frame = churn_batch(rows, day=number, seed=seed)
    else:
        frame = schema_batch(config, rows, day=number, seed=seed)
    for column in key:
        if column not in frame.columns:
            frame[column] = [f"{column}-{day:%Y%m%d}-{index:07d}" for index in range(rows)]
    frame = frame[[*key, *config.features]]
    if breakage:
        frame = break_batch(frame, config, breakage)
    folder = input_root(config) / partition_name(day)
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomically(frame, folder / f"customers.{fmt}")


def write_atomically(frame: pd.DataFrame, target: Path) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) under a dot-name, then rename it into place:
    watchers and readers skip dot-files, so they never see a half-written batch."""
    partial = target.with_name(f".{target.name}.partial")
    if target.suffix == ".parquet":
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False)
    partial.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pipeline", nargs="?", default="churn", help="pipeline config name")
    parser.add_argument("--day", type=int, help="day number (default: the next one)")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", type=float, default=0.0, help="covariate drift 0..1")
    parser.add_argument("--label-drift", type=float, default=0.0, help="concept drift 0..1")
    parser.add_argument("--break", dest="breakage", choices=BREAKAGES, help="write a broken batch")
    parser.add_argument(
        "--format", choices=("csv", "parquet"), default=None, help="default csv (parquet to score)"
    )
    parser.add_argument(
        "--score-day",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="write a table for batch scoring on that day instead of a training batch",
    )
    args = parser.parse_args(argv)
    config = find_pipeline_config(args.pipeline)
    if args.score_day is not None:
        path = write_scoring_day(
            config,
            args.score_day,
            rows=args.rows,
            seed=args.seed,
            breakage=args.breakage,
            fmt=args.format or "parquet",
        )
        print(f"wrote {path} (CT_DATA_DIR={data_dir()})")
        return 0
    path = write_batch(
        config,
        day=args.day,
        rows=args.rows,
        seed=args.seed,
        drift=args.drift,
        label_drift=args.label_drift,
        breakage=args.breakage,
        fmt=args.format or "csv",
    )
    print(f"wrote {path} (CT_DATA_DIR={data_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
