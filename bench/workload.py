"""The generated wide workload of the scale benchmark: 24 mixed features and a binary target.

The pipeline config is a normal YAML file written to a pipelines folder (``CT_PIPELINES_DIR``);
batches are Parquet files written in chunks so generating 10M rows stays small in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

NAME = "wide"
CHUNK_ROWS = 1_000_000
CATEGORIES: dict[str, list[str]] = {
    f"cat_{i:02d}": [f"v{j}" for j in range(size)] for i, size in enumerate((3, 4, 5, 8, 12, 20))
}
FLOATS = [f"num_{i:02d}" for i in range(12)]
NULLABLE_FLOATS = set(FLOATS[:4])
INTEGERS = [f"int_{i:02d}" for i in range(4)]
BOOLEANS = [f"flag_{i:02d}" for i in range(2)]


def pipeline_config() -> dict[str, Any]:
    """The workload's pipeline config, as it would be written in YAML."""
    features: dict[str, Any] = {}
    for name in FLOATS:
        features[name] = {"type": "float", "min": -100.0, "max": 100.0, "nullable": name in NULLABLE_FLOATS}
    for name in INTEGERS:
        features[name] = {"type": "integer", "min": 0, "max": 1000}
    for name, values in CATEGORIES.items():
        features[name] = {"type": "category", "values": values, "nullable": name.endswith(("04", "05"))}
    for name in BOOLEANS:
        features[name] = {"type": "boolean"}
    return {
        "name": NAME,
        "description": "Generated wide tabular workload of the scale benchmark.",
        "task": "classification",
        "source": {"type": "files", "path": f"landing/{NAME}"},
        "target": "label",
        "target_values": [0, 1],
        "features": features,
        "slices": ["cat_00"],
        "metric": "roc_auc",
        "metrics": ["accuracy", "log_loss"],
        "promotion": {"threshold": 0.6, "min_improvement": 0.0, "max_slice_drop": 0.05},
        "model": {
            "type": "hist_gradient_boosting",
            "params": {"max_iter": 100, "learning_rate": 0.1, "max_depth": 6},
        },
        "training": {"test_size": 0.2, "window": 1},
        "validation": {"min_rows": 100},
        "deploy": {"smoke_rows": 50, "latency_requests": 50, "latency_p95_ms": 1000},
        "schedule": None,
    }


def write_config(pipelines_dir: Path) -> Path:
    """Write the workload's YAML config into ``pipelines_dir``; returns its path."""
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    path = pipelines_dir / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(pipeline_config(), sort_keys=False))
    return path


def generate(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of the workload with a target the features explain (vectorised)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for index, name in enumerate(FLOATS):
        values = rng.normal(0.0, 30.0, size=rows).clip(-100, 100).round(3)
        signal += (0.02 if index % 2 else -0.015) * values / (index + 1)
        if name in NULLABLE_FLOATS:
            values[rng.random(rows) < 0.05] = np.nan
        columns[name] = values
    for index, name in enumerate(INTEGERS):
        integers = rng.integers(0, 1001, size=rows)
        signal += 0.001 * (index + 1) * (integers - 500) / 100
        columns[name] = integers
    for index, (name, values_list) in enumerate(CATEGORIES.items()):
        picks = rng.integers(0, len(values_list), size=rows)
        signal += 0.3 * np.sin(picks + index)
        labels = np.asarray(values_list, dtype=object)[picks]
        if name.endswith(("04", "05")):
            labels[rng.random(rows) < 0.03] = None
        columns[name] = labels
    for name in BOOLEANS:
        flags = rng.random(rows) < 0.4
        signal += 0.4 * flags
        columns[name] = flags
    probability = 1 / (1 + np.exp(-(signal - signal.mean())))
    columns["label"] = (rng.random(rows) < probability).astype("int64")
    return pd.DataFrame(columns)


def write_batch(landing: Path, rows: int, *, seed: int = 0, name: str = "batch_0001") -> Path:
    """Write ``rows`` generated rows as one Parquet batch into ``landing``, chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"{name}.parquet"
    partial = landing / f".{target.name}.partial"
    writer: pq.ParquetWriter | None = None
    try:
        for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
            table = pa.Table.from_pandas(
                generate(min(CHUNK_ROWS, rows - start), seed=seed * 1000 + index), preserve_index=False
            )
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    partial.rename(target)
    return target
