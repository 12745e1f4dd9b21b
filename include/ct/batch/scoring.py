"""Score one day's input with one resolved model version, chunk by chunk, into its partition.

The version is resolved once, when the run starts, and passed to every step: a champion moved
meanwhile takes effect at the next run, never halfway through one. Every output row carries its
key, the model version, the model's MLflow run, the input's data version and the scoring run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.ct.batch.inputs import BatchInput, iter_chunks, verify_unchanged
from include.ct.batch.partitions import (
    MANIFEST,
    batch_spec,
    output_root,
    partition_name,
    publish,
    staging_dir,
)
from include.ct.config import PipelineConfig
from include.ct.modeling.pipeline_building import coerce_features
from include.ct.registry import registry
from include.ct.registry.served_model import ServedModel
from include.ct.storage import write_json_atomic

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
METADATA = ("model_name", "model_version", "model_run_id", "input_version", "scoring_run_id")
SCORE_DATE = "score_date"  # the partition column of a SQL output


class NoChampionError(Exception):
    """The pipeline has no champion yet: there is nothing to score with."""


@dataclass(frozen=True)
class ResolvedModel:
    """A registered model version, resolved from an alias once per run."""

    name: str
    version: str
    run_id: str
    alias: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class ScoringResult:
    """What one scoring pass wrote; small enough for XCom and the run note."""

    day: str
    rows: int
    model_version: str
    input_version: str
    output: str
    files: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_champion(config: PipelineConfig) -> ResolvedModel:
    """The version the ``champion`` alias points at now; NoChampionError before the first promotion
    (a registry that cannot be reached is an error, never "no champion": the task retries)."""
    number = registry.champion_version_strict(config)
    if number is None:
        raise NoChampionError(
            f"{config.registered_model_name} has no '{registry.CHAMPION_ALIAS}' yet: nothing scores "
            f"until {config.dag_id} promotes a first model"
        )
    version = registry.client().get_model_version(config.registered_model_name, number)
    return ResolvedModel(config.registered_model_name, number, str(version.run_id), registry.CHAMPION_ALIAS)


def resolve_challenger(config: PipelineConfig) -> ResolvedModel | None:
    """The challenger under online validation (shadow or canary), or None."""
    from include.ct.registry.staging import CHALLENGER_ALIAS, staged_challenger

    staged = staged_challenger(config)
    if staged is None or staged.strategy not in ("shadow", "canary"):
        return None
    version = registry.client().get_model_version(config.registered_model_name, staged.version)
    return ResolvedModel(config.registered_model_name, staged.version, str(version.run_id), CHALLENGER_ALIAS)


def load_model(config: PipelineConfig, model: ResolvedModel) -> ServedModel:
    """Load exactly ``model.version`` as the service would (signature and sample checked)."""
    from include.ct.registry.served_model import load_served_model

    return load_served_model(config, model.version)


def predict_columns(served: ServedModel, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """The prediction (and each class's probability) of ``features`` as columns.

    Chunks go through the fitted Pipeline: the service's fast path only pays on small requests,
    where pandas' per-call overhead dominates.
    """
    model = served.model
    if served.classes is not None and hasattr(model, "predict_proba"):
        probabilities = model.predict_proba(features)
        classes = np.asarray(served.classes, dtype=object if isinstance(served.classes[0], str) else None)
        columns = {PREDICTION: classes[probabilities.argmax(axis=1)]}
        for index, label in enumerate(served.classes):
            columns[f"{PROBABILITY_PREFIX}{label}"] = probabilities[:, index]
        return columns
    return {PREDICTION: np.asarray(model.predict(features))}


def score_frame(
    config: PipelineConfig, served: ServedModel, frame: pd.DataFrame, metadata: dict[str, str]
) -> pd.DataFrame:
    """Key columns, prediction, probabilities and metadata of every row of ``frame``, in order."""
    key = batch_spec(config).key
    out = frame[key].reset_index(drop=True)
    for name, values in predict_columns(served, coerce_features(config, frame)).items():
        out[name] = values
    for name in METADATA:
        out[name] = metadata[name]
    return out


def metadata_of(model: ResolvedModel, batch: BatchInput, scoring_run_id: str) -> dict[str, str]:
    return {
        "model_name": model.name,
        "model_version": model.version,
        "model_run_id": model.run_id,
        "input_version": batch.data_version,
        "scoring_run_id": scoring_run_id,
    }


def scored_chunks(
    config: PipelineConfig, served: ServedModel, batch: BatchInput, metadata: dict[str, str]
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(input chunk, scored chunk) for every chunk of every input file, in order."""
    spec = batch_spec(config)
    for name in batch.files:
        for chunk in iter_chunks(Path(name), spec.chunk_rows, spec.key):
            yield chunk, score_frame(config, served, chunk, metadata)


def score_day(
    config: PipelineConfig,
    model: ResolvedModel,
    batch: BatchInput,
    scoring_run_id: str,
    *,
    served: ServedModel | None = None,
    sql_engine: Any = None,
    evidence: ServedModel | None = None,
    evidence_model: ResolvedModel | None = None,
) -> ScoringResult:
    """Score ``batch`` with ``model`` and replace the day's output with the result.

    With ``evidence`` (the staged challenger, loaded), both versions' predictions also go to the
    prediction log under the batch key, where the online decision pairs them with late labels.
    """
    started = time.perf_counter()
    spec = batch_spec(config)
    verify_unchanged(batch)
    served = served or load_model(config, model)
    metadata = metadata_of(model, batch, scoring_run_id)
    day = date.fromisoformat(batch.day)
    logger = _EvidenceLog(config, batch, model, evidence, evidence_model) if evidence is not None else None
    chunks = scored_chunks(config, served, batch, metadata)
    if logger is not None:
        chunks = logger.tee(chunks)
    if spec.output.type == "sql":
        if sql_engine is None:
            raise ValueError("a sql batch output needs a SQLAlchemy engine")
        rows, files = write_sql_day(sql_engine, str(spec.output.table), day, (out for _, out in chunks)), 1
        output = f"{spec.output.conn_id}:{spec.output.table} ({SCORE_DATE} = {day})"
    else:
        final = output_root(config) / partition_name(day)
        rows, files = write_parquet_day(
            final, (out for _, out in chunks), manifest=metadata | {"day": batch.day}
        )
        output = str(final)
    result = ScoringResult(batch.day, rows, model.version, batch.data_version, output, files, 0.0)
    result.seconds = round(time.perf_counter() - started, 3)
    log.info(
        "%s %s: %d rows scored by %s v%s in %.1f s -> %s",
        config.name,
        batch.day,
        rows,
        model.name,
        model.version,
        result.seconds,
        output,
    )
    return result


def write_parquet_day(
    final: Path, frames: Iterator[pd.DataFrame], *, manifest: dict[str, Any]
) -> tuple[int, int]:
    """Write ``frames`` as the partition ``final`` (one file per chunk), swapped in when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(final)
    staging.mkdir()
    rows = files = 0
    schema: pa.Schema | None = None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            schema = schema or table.schema
            pq.write_table(table.cast(schema), staging / f"part-{files:05d}.parquet")
            rows += len(frame)
            files += 1
        write_json_atomic(
            staging / MANIFEST,
            {**manifest, "rows": rows, "files": files, "written_at": datetime.now(UTC).isoformat()},
        )
        publish(staging, final)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rows, files


def write_sql_day(engine: Any, table: str, day: date, frames: Iterator[pd.DataFrame]) -> int:
    """Replace the day's rows of ``table`` with ``frames`` in one transaction (created if missing)."""
    import sqlalchemy

    schema, _, name = table.rpartition(".")
    rows = 0
    with engine.begin() as connection:
        if sqlalchemy.inspect(connection).has_table(name, schema=schema or None):
            deleted = connection.execute(
                sqlalchemy.text(f"DELETE FROM {table} WHERE {SCORE_DATE} = :day"), {"day": day}
            ).rowcount
            log.info("%s: replacing %s rows of %s", table, deleted, day)
        for frame in frames:
            frame.insert(0, SCORE_DATE, day)
            frame.to_sql(name, connection, schema=schema or None, if_exists="append", index=False)
            rows += len(frame)
    return rows


class _EvidenceLog:
    """Dual scoring: the staged challenger scores the same chunks; both go to the prediction log."""

    def __init__(
        self,
        config: PipelineConfig,
        batch: BatchInput,
        champion: ResolvedModel,
        challenger: ServedModel,
        challenger_model: ResolvedModel | None,
    ) -> None:
        self.config = config
        self.batch = batch
        self.champion = champion
        self.challenger = challenger
        self.challenger_version = challenger_model.version if challenger_model else challenger.version

    def tee(
        self, chunks: Iterator[tuple[pd.DataFrame, pd.DataFrame]]
    ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        from include.ct.batch.evidence import clear_evidence, log_pair

        clear_evidence(self.config, self.batch.day)
        for number, (chunk, scored) in enumerate(chunks):
            log_pair(
                self.config,
                self.batch,
                chunk,
                scored,
                self.champion.version,
                predict_columns(self.challenger, coerce_features(self.config, chunk)),
                self.challenger_version,
                number,
            )
            yield chunk, scored
