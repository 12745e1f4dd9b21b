"""Schema-conformant rows for any pipeline config, with a learnable target.

The serving check predicts them to prove a freshly loaded version answers; tests and demos
train on them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from include.ct.config import PipelineConfig

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # day 0 of generated data


def schema_batch(
    config: PipelineConfig, rows: int, *, day: int, seed: int = 0, drift: float = 0.0
) -> pd.DataFrame:
    """Rows that satisfy any config's schema, with a learnable target (for tests and demos)."""
    rng = np.random.default_rng([seed, day, 7])
    columns: dict[str, object] = {}
    signal = np.zeros(rows)
    for index, (name, spec) in enumerate(config.features.items()):
        weight = (index % 3 + 1) * (1 if index % 2 == 0 else -1)
        if spec.is_numeric:
            low = spec.min if spec.min is not None else 0.0
            high = spec.max if spec.max is not None else low + 100.0
            span = high - low
            centre = low + span * (0.5 + 0.25 * drift)
            values = np.clip(rng.normal(centre, span / 6, size=rows), low, high)
            signal += weight * (values - (low + span / 2)) / span
            columns[name] = values.round().astype(int) if spec.type == "integer" else values.round(3)
        elif spec.type == "boolean":
            flags = rng.random(rows) < 0.5 + 0.3 * drift
            signal += weight * 0.5 * flags
            columns[name] = flags
        else:
            values_list = list(spec.values or [])
            picks = rng.integers(0, len(values_list), size=rows)
            signal += weight * 0.4 * (picks / max(len(values_list) - 1, 1))
            columns[name] = [values_list[i] for i in picks]
    if config.task == "regression":
        columns[config.target] = (10 * signal + rng.normal(0, 1, size=rows)).round(4)
    else:
        labels = config.target_values or [0, 1]
        probability = 1 / (1 + np.exp(-3 * signal))
        columns[config.target] = [labels[1] if p else labels[0] for p in rng.random(rows) < probability]
    if config.timestamp:
        start = EPOCH + timedelta(days=day)
        columns[config.timestamp] = [
            start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, size=rows))
        ]
    return pd.DataFrame(columns)
