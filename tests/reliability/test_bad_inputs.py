"""Bad input never trains and is never lost: each kind ends in quarantine with a report naming the
problem, the good batches beside it stay pending and are accepted by the next run, the landing
zone holds no half-consumed file, and the inventory accounts for every file that arrived."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.ct.config import PipelineConfig
from include.ct.data.extract import extract
from include.ct.data.inventory import batch_inventory
from include.ct.data.validate import DataValidationError, validate_snapshot
from include.ct.storage import pipeline_paths
from tests.reliability.conftest import Ledger
from tools import datagen


def _good(day: int, rows: int = 300) -> pd.DataFrame:
    return datagen.churn_batch(rows, day=day)


def _land(frame: pd.DataFrame, target: Path) -> Path:
    """Write a batch as CSV or Parquet, by the file name's suffix."""
    if target.suffix == ".parquet":
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return target


def _truncated_csv(path: Path) -> Path:
    text = _good(11).to_csv(index=False)
    target = path / "day_0011.csv"
    target.write_text(text[: int(len(text) * 0.6)])  # cut mid-row, as an interrupted upload leaves it
    return target


def _corrupt_parquet(path: Path) -> Path:
    full = path.parent / "full.parquet"
    _good(12).to_parquet(full, index=False)
    target = path / "day_0012.parquet"
    target.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return target


def _wrong_encoding(path: Path) -> Path:
    frame = _good(13)
    frame.loc[0, "region"] = "nördlich"
    target = path / "day_0013.csv"
    target.write_bytes(frame.to_csv(index=False).encode("latin-1"))
    return target


def _empty(path: Path) -> Path:
    target = path / "day_0014.csv"
    target.write_bytes(b"")
    return target


def _header_only(path: Path) -> Path:
    target = path / "day_0015.csv"
    target.write_text(",".join(_good(15).columns) + "\n")
    return target


def _ten_times_the_columns(path: Path) -> Path:
    frame = _good(16)
    for index in range(len(frame.columns) * 9):
        frame[f"extra_{index:03d}"] = index
    return _land(frame, path / "day_0016.parquet")


def _over_the_size_limit(path: Path) -> Path:
    target = path / "day_0017.csv"
    pd.concat([_good(17, 5000)] * 4).to_csv(target, index=False)  # ~1.6 MB, limit set to 1 MB below
    return target


def _nan_features(path: Path) -> Path:
    frame = _good(18)
    frame["tenure_months"] = frame["tenure_months"].astype("float64")
    frame.loc[:9, "tenure_months"] = np.nan
    return _land(frame, path / "day_0018.parquet")


def _inf_features(path: Path) -> Path:
    frame = _good(19)
    frame.loc[:4, "monthly_fee"] = np.inf
    return _land(frame, path / "day_0019.parquet")


def _labels_outside_the_set(path: Path) -> Path:
    frame = _good(20)
    frame.loc[:6, "churned"] = 2
    return _land(frame, path / "day_0020.csv")


def _duplicated_ids(path: Path) -> Path:
    frame = _good(21)
    frame.loc[1:3, "customer_id"] = frame.loc[0, "customer_id"]
    return _land(frame, path / "day_0021.csv")


def _binary_garbage(path: Path) -> Path:
    target = path / "day_0022.csv"
    target.write_bytes(np.random.default_rng(7).bytes(4096))
    return target


# name -> (writer, column the report must name, rule it must name)
BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "truncated CSV": (_truncated_csv, "", ""),
    "corrupt Parquet": (_corrupt_parquet, "(file)", "readable Parquet"),
    "wrong encoding": (_wrong_encoding, "(file)", "UTF-8 encoding"),
    "empty file": (_empty, "(file)", "not empty"),
    "header only": (_header_only, "(table)", "row_count"),
    "10x schema columns": (_ten_times_the_columns, "extra_000", "columns_to_match_set"),
    "file over the memory budget": (_over_the_size_limit, "(file)", "within size limit"),
    "NaN in a required feature": (_nan_features, "tenure_months", "not_be_null"),
    "inf in a feature": (_inf_features, "monthly_fee", "finite values"),
    "labels outside the allowed set": (_labels_outside_the_set, "churned", "in_set"),
    "duplicated ids": (_duplicated_ids, "customer_id", "unique"),
    "binary garbage named .csv": (_binary_garbage, "(file)", "UTF-8 encoding"),
}


def _limits(config: PipelineConfig) -> PipelineConfig:
    return config.model_copy(update={"source": config.source.model_copy(update={"max_batch_mb": 1.0})})


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_quarantined_with_a_report_naming_the_problem(
    kind: str, hardened: PipelineConfig, reliability: Ledger
) -> None:
    config = _limits(hardened)
    landing = pipeline_paths(config).landing
    landing.mkdir(parents=True)
    good = landing / "day_0001.csv"
    _good(1).to_csv(good, index=False)
    writer, column, rule = BAD_INPUTS[kind]
    bad = writer(landing)

    with pytest.raises(DataValidationError) as failure:
        validate_snapshot(config, extract(config))
    message = str(failure.value)
    assert f"file '{bad.name}'" in message and column in message and rule in message, message
    assert good.name not in message

    quarantine = pipeline_paths(config).quarantine
    assert (quarantine / bad.name).exists() and not bad.exists()
    report = json.loads((quarantine / f"{bad.name}.report.json").read_text())
    assert report["file"] == bad.name and not report["success"] and report["failures"]
    assert (quarantine / f"{bad.name}.report.html").exists()
    # The good batch waits, whole, for the next run, which accepts it alone.
    assert [p.name for p in landing.iterdir()] == [good.name]
    outcome = validate_snapshot(config, extract(config))
    assert outcome.success and not any(landing.iterdir())

    inventory = batch_inventory(config)
    assert inventory.problems == []
    assert inventory.unaccounted([good.name, bad.name]) == []
    assert inventory.accepted.keys() == {good.name} and inventory.quarantined.keys() == {bad.name}
    first_failure = report["failures"][0]
    reliability.record(
        "bad input",
        kind,
        f"quarantined: `{first_failure['column']}` {first_failure['rule']}",
        inputs=2,
    )


def test_every_arrived_batch_is_in_a_snapshot_or_in_quarantine(
    hardened: PipelineConfig, tmp_path: Path, reliability: Ledger
) -> None:
    """A stream of good and bad batches over many runs: the inventory accounts for all of them."""
    config = _limits(hardened)
    landing = pipeline_paths(config).landing
    landing.mkdir(parents=True)
    arrived: list[str] = []
    writers = [writer for writer, _, _ in BAD_INPUTS.values()]
    for run, writer in enumerate(writers, start=1):
        good = landing / f"day_{100 + run:04d}.parquet"
        _good(100 + run).to_parquet(good, index=False)
        arrived += [good.name, writer(landing).name]
        try:
            validate_snapshot(config, extract(config))
        except DataValidationError:
            validate_snapshot(config, extract(config))  # the next run takes the good batches
    # A fixed batch re-sent under a quarantined name is a new arrival; both copies are kept.
    resent = landing / "day_0014.csv"
    _good(14).to_csv(resent, index=False)
    arrived.append(resent.name)
    validate_snapshot(config, extract(config))

    inventory = batch_inventory(config)
    assert inventory.problems == []
    assert inventory.pending == []
    assert inventory.unaccounted(arrived) == []
    assert len(inventory.accepted) == len(writers) + 1
    assert len(inventory.quarantined) == len(writers)
    reliability.record(
        "bad input",
        "inventory over a stream of good and bad batches",
        f"{len(inventory.accepted)} accepted + {len(inventory.quarantined)} quarantined"
        f" = {len(arrived)} arrived",
        inputs=len(arrived),
    )
