"""Dual scoring's evidence: champion and staged challenger predictions of a batch, in the prediction log.

Both are logged under the batch key as ``prediction_id`` with the role ``batch`` (the monitor's
drift and live quality leave them out: they are not live traffic), so labels that arrive for
those keys pair them exactly as they pair live traffic and count towards the online promotion
decision. A re-run of a day first removes that day's earlier evidence: it replaces, never adds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from include.ct.batch.inputs import BatchInput
from include.ct.batch.partitions import batch_spec
from include.ct.config import PipelineConfig
from include.ct.monitoring.prediction_log import BATCH, BATCH_PREFIX, prediction_log_dir

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

KEY_SEPARATOR = "/"


def prediction_ids(frame: pd.DataFrame, key: list[str]) -> np.ndarray:
    """The batch key as the log's ``prediction_id``: the values joined by '/'."""
    values = frame[key].astype("string")
    joined = values[key[0]]
    for column in key[1:]:
        joined = joined + KEY_SEPARATOR + values[column]
    ids: np.ndarray = joined.to_numpy(dtype=object)
    return ids


def clear_evidence(config: PipelineConfig, day: str) -> int:
    """Remove the evidence an earlier run of ``day`` logged (whatever day it was logged on)."""
    root = prediction_log_dir()
    if root is None or not (root / config.name).is_dir():
        return 0
    stale = list((root / config.name).glob(f"date=*/{BATCH_PREFIX}{day}-*.parquet"))
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("%s %s: removed %d evidence files of an earlier run", config.name, day, len(stale))
    return len(stale)


def log_pair(
    config: PipelineConfig,
    batch: BatchInput,
    chunk: pd.DataFrame,
    scored: pd.DataFrame,
    champion_version: str,
    challenger: dict[str, np.ndarray],
    challenger_version: str,
    number: int,
) -> None:
    """Write one chunk's champion and challenger predictions to the prediction log.

    File names are fixed per (day, version, chunk): a re-run replaces them rather than adding rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = prediction_log_dir()
    if root is None:
        log.warning("prediction log is off (CT_PREDICTION_LOG_DIR): dual scoring logs no evidence")
        return
    now = datetime.now(UTC)
    folder = root / config.name / f"date={now:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    ids = prediction_ids(chunk, batch_spec(config).key)
    features = chunk[config.feature_names].reset_index(drop=True)
    champion = {
        name: scored[name].to_numpy()
        for name in scored.columns
        if name.startswith(("prediction", "probability_"))
    }
    for version, columns in ((champion_version, champion), (challenger_version, challenger)):
        table = features.assign(
            prediction_id=ids,
            predicted_at=now,
            model_version=version,
            role=BATCH,
            prediction=columns["prediction"],
        )
        score = _score(columns)
        if score is not None:
            table["score"] = score
        name = f"{BATCH_PREFIX}{batch.day}-v{version}-{number:05d}.parquet"
        temporary = folder / f".{name}.tmp"
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), temporary)
        temporary.rename(folder / name)
    log.info(
        "%s %s chunk %d: %d paired predictions logged (v%s, v%s)",
        config.name,
        batch.day,
        number,
        len(ids),
        champion_version,
        challenger_version,
    )


def _score(columns: dict[str, np.ndarray]) -> np.ndarray | None:
    """As the live log keeps it: the positive class's probability (binary), the top one otherwise."""
    probabilities = [values for name, values in columns.items() if name.startswith("probability_")]
    if not probabilities:
        return None
    if len(probabilities) == 2:
        return probabilities[1]
    top: np.ndarray = np.max(np.column_stack(probabilities), axis=1)
    return top
